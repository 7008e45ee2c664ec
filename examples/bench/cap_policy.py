"""What happens past --max-connections: wait in the listen queue (tornado-run) or accept and
answer 503 (uvicorn's --limit-concurrency). One worker with a cap of 50, and 200 clients that
connect at once and each send one request to an endpoint that takes 0.2 s.

    python examples/bench/cap_policy.py [--clients 200] [--cap 50]

Both policies run the worker's own server and `Acceptor`; the 503 one wraps the server in a
sink that answers 503 itself once the server holds the cap (the acceptor then never pauses).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import socket
import statistics
import sys
import time
from collections import Counter
from typing import Any

import tornado.web
from tornado_run.runner.worker.accepting import Acceptor
from tornado_run.runner.worker.httpserver import DrainingHTTPServer

SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


class Slow(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(0.2)
        self.write("ok")


class Refusing:
    """A sink that answers 503 and closes once `server` holds `cap` connections."""

    def __init__(self, server: DrainingHTTPServer, cap: int) -> None:
        self.server = server
        self.cap = cap

    def accepted(self, sock: socket.socket, address: Any) -> None:
        if self.server.connection_count >= self.cap:
            with contextlib.suppress(OSError):
                sock.send(SERVICE_UNAVAILABLE)
            sock.close()
            return
        self.server.accepted(sock, address)

    @property
    def connection_count(self) -> int:
        return self.server.connection_count


def serve(policy: str, cap: int, ports: Any) -> None:
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0), backlog=2048)
        server = DrainingHTTPServer(tornado.web.Application([("/", Slow)]), max_connections=cap)
        if policy == "queue":
            server.add_sockets([listener])
        else:
            Acceptor(Refusing(server, cap), [listener], max_connections=1 << 30).start()
        ports.put(listener.getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def one_client(port: int) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        status = data.split(b" ", 2)[1].decode() if data else "closed"
    except (TimeoutError, OSError) as exc:
        status = type(exc).__name__
    return status, (time.perf_counter() - started) * 1000


async def clients(port: int, count: int) -> list[tuple[str, float]]:
    return list(await asyncio.gather(*(one_client(port) for _ in range(count))))


def measure(policy: str, cap: int, count: int) -> str:
    ports: Any = multiprocessing.Queue()
    worker = multiprocessing.Process(target=serve, args=(policy, cap, ports), daemon=True)
    worker.start()
    try:
        port = ports.get(timeout=30)
        results = asyncio.run(clients(port, count))
    finally:
        worker.kill()
        worker.join(10)
    statuses = Counter(status for status, _ in results)
    ok = sorted(ms for status, ms in results if status == "200")
    timing = f"{statistics.median(ok):.0f} ms / {ok[-1]:.0f} ms" if ok else "-"
    others = {k: v for k, v in statuses.items() if k not in ("200", "503")}
    return (
        f"| {policy} | {statuses['200']} | {statuses['503']} | {timing} | {sum(others.values())} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--cap", type=int, default=50)
    args = parser.parse_args()
    print(f"{args.clients} clients at once, --max-connections {args.cap}, 0.2 s endpoint\n")
    print("| past the cap | 200 | 503 | 200s: median / slowest | other |")
    print("|---|---|---|---|---|")
    for policy in ("queue", "503"):
        print(measure(policy, args.cap, args.clients), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
