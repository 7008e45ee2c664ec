"""Peer: the hand-rolled pre-fork server that tornado-run replaces (`bind_sockets` then
`fork_processes`), serving the benchmark's hello world app.

    python examples/bench/peer_raw_fork.py --port 8000 --workers 2
    python examples/bench/peer_raw_fork.py --port 8443 --certfile cert.pem --keyfile key.pem
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


async def serve(sockets: list[object], certfile: str | None, keyfile: str | None) -> None:
    import ssl

    from tornado.httpserver import HTTPServer

    from examples.bench.hello import application

    context = None
    if certfile:  # what a hand-rolled server does: Tornado's ssl_options with a context
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
    server = HTTPServer(application, ssl_options=context)
    server.add_sockets(sockets)  # type: ignore[arg-type]
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--certfile", help="serve HTTPS with this PEM certificate")
    parser.add_argument("--keyfile", help="its PEM key")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tornado.netutil import bind_sockets
    from tornado.process import fork_processes

    sockets = bind_sockets(args.port, "127.0.0.1")
    fork_processes(args.workers)
    asyncio.run(serve(sockets, args.certfile, args.keyfile))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
