"""Peer: the hand-rolled pre-fork server that tornado-run replaces (`bind_sockets` then
`fork_processes`), serving the benchmark's hello world app.

    python examples/bench/peer_raw_fork.py --port 8000 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


async def serve(sockets: list[object]) -> None:
    from tornado.httpserver import HTTPServer

    from examples.bench.hello import application

    server = HTTPServer(application)
    server.add_sockets(sockets)  # type: ignore[arg-type]
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tornado.netutil import bind_sockets
    from tornado.process import fork_processes

    sockets = bind_sockets(args.port, "127.0.0.1")
    fork_processes(args.workers)
    asyncio.run(serve(sockets))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
