"""Peer: the hand-rolled CPU offload that `@unblock(pool="process")` replaces: one Tornado
process and a stdlib `ProcessPoolExecutor` with one process per core, `run_in_executor`.

    python examples/bench/peer_stdlib_pool.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


async def serve(port: int, pool: ProcessPoolExecutor) -> None:
    import tornado.web

    from examples.bench.apps import SLOW_MS, Fast
    from examples.bench.hello import Pid
    from examples.cpu import burn

    class Slow(tornado.web.RequestHandler):
        async def get(self) -> None:
            loop = asyncio.get_running_loop()
            self.write({"checksum": await loop.run_in_executor(pool, burn, SLOW_MS)})

    app = tornado.web.Application([(r"/fast", Fast), (r"/slow", Slow), (r"/pid", Pid)])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=None, help="default: usable cores")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tornado_run.runner.cpus import usable_cores

    with ProcessPoolExecutor(max_workers=args.processes or usable_cores()) as pool:
        asyncio.run(serve(args.port, pool))


if __name__ == "__main__":
    main()
