"""The fast HTTP/1.1 server (`--http fast`): httptools parsing on asyncio transports, driving
a Tornado application through Tornado's own delegate interfaces."""
