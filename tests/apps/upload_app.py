"""Test app: /slow-upload streams the request body to a handler that awaits
`?sleep=` seconds (default 0.01) for each piece, and answers the byte count."""

import asyncio

import tornado.web


@tornado.web.stream_request_body
class SlowUpload(tornado.web.RequestHandler):
    def prepare(self) -> None:
        self.received = 0
        self.pause = float(self.get_argument("sleep", "0.01"))

    async def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)
        await asyncio.sleep(self.pause)

    def put(self) -> None:
        self.write({"received": self.received})


application = tornado.web.Application([(r"/slow-upload", SlowUpload)])
