"""The event loop a worker runs on: `--loop auto|asyncio|uvloop`, and the loop a server set
up before it runs will use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop constructor for --loop (auto: uvloop when it imports)."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return new_loop
    return asyncio.new_event_loop


def current_loop() -> asyncio.AbstractEventLoop:
    """The running loop, or outside one the loop Tornado's IOLoop.current() runs on (so a
    server can be set up before the loop starts, as Tornado's own can)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        from tornado.ioloop import IOLoop

        loop: asyncio.AbstractEventLoop = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]
        return loop
