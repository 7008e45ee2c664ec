"""The CPU tier's broker: one process, forked by the master, that runs every process-kind pool
for all web workers of the host.

Before its event loop starts it forks the zygote its pool processes come from (so with
--preload they share the imported app copy-on-write). It then serves web workers on the unix
socket the master bound: each connection declares pools and sends calls, relayed to the
pool's `Dispatcher` without unpickling them. A connection that closes (its worker died or
left) withdraws its queued calls and drops its running calls' results. The master's drain
signal (`lifecycle.TIER_DRAIN_SIGNAL`): stop taking connections, exit once the connected
workers have gone and the calls they left have ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from tornado_run.runner import lifecycle

from .. import registry
from ..api import PoolSpec
from ..offload import wire
from ..offload.zygote import Zygote
from .link import Link
from .pools import HostPool, copy_reply, failure_text, same_declaration

log = logging.getLogger("tornado_run.tier")

STATS_PERIOD = 0.5
"""Seconds between the figures sent to the master (and parent checks)."""
EXIT_POOL_FAILED = 3


def serve(
    listener: socket.socket,
    report: lifecycle.TierReport,
    master_pid: int,
    graceful_timeout: float,
) -> int:
    """Run the broker until drained (SIGTERM) or its master is gone; returns the exit code."""
    _set_title()
    zygote = Zygote.start("fork")
    try:
        broker = Broker(listener, zygote, report, master_pid, graceful_timeout)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(broker.run(_preloaded_specs()))
    finally:
        zygote.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop where it imports: the broker's work is all socket relaying."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _set_title() -> None:
    with contextlib.suppress(ImportError):
        import setproctitle

        setproctitle.setproctitle("tornado-run: cpu tier")


def _preloaded_specs() -> list[PoolSpec]:
    """Process-kind pools the app declared in the master's import (--preload) that need an
    early start: those with an initializer, so one that raises stops tornado-run at once."""
    specs = (registry.declared(name) for name in registry.names())
    return [s for s in specs if s and s.kind == "process" and s.options.get("initializer")]


class Broker:
    """The broker's state on its loop: pools by name and the live worker links."""

    def __init__(
        self,
        listener: socket.socket,
        zygote: Zygote,
        report: lifecycle.TierReport,
        master_pid: int,
        graceful_timeout: float,
    ) -> None:
        self.listener = listener
        self.zygote = zygote
        self.report = report
        self.master_pid = master_pid
        self.graceful_timeout = graceful_timeout
        self.pools: dict[str, HostPool] = {}
        self.links: set[Link] = set()
        self._draining = False
        self._done: asyncio.Event | None = None
        self._failed = False

    async def run(self, preloaded: list[PoolSpec]) -> int:
        loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        loop.add_signal_handler(lifecycle.TIER_DRAIN_SIGNAL, self.drain)
        for spec in preloaded:
            failure = await self.declare(spec)
            if failure is not None:
                self._report_failure(spec.name, failure)
                return EXIT_POOL_FAILED
        self.listener.setblocking(False)
        loop.add_reader(self.listener.fileno(), self._accept)
        self.report("ready", pid=os.getpid())
        ticker = asyncio.ensure_future(self._tick())
        await self._done.wait()
        ticker.cancel()
        await self._close_pools()
        return 0

    # ---- connections ------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("cpu tier: accept failed: %s", error)
                return
            self.links.add(Link(sock, self))

    def link_closed(self, link: Link) -> None:
        self.links.discard(link)
        self._check_drained()

    # ---- pools ------------------------------------------------------------------------

    async def declare(self, spec: PoolSpec) -> wire.Frame | None:
        """Start pool `spec` once; None when it runs, else the INIT_FAILED reply."""
        pool = self.pools.get(spec.name)
        if pool is None:
            pool = self.pools[spec.name] = HostPool(
                spec, self.zygote, lambda why: self._pool_failing(spec.name, why)
            )
            log.info("cpu tier: pool %r started (size %d)", spec.name, pool.admission.size)
        elif not same_declaration(pool.spec, spec):
            log.warning(
                "cpu tier: pool %r declared differently by another worker; keeping the first "
                "declaration",
                spec.name,
            )
        failure = await asyncio.shield(pool.ready)
        return copy_reply(failure) if failure is not None else None

    def pool(self, name: str) -> HostPool | None:
        return self.pools.get(name)

    def _pool_failing(self, name: str, why: str) -> None:
        if not self._failed:
            self._failed = True
            self.report("failed", code=EXIT_POOL_FAILED, message=why)

    def _report_failure(self, name: str, reply: wire.Frame) -> None:
        if not self._failed:
            self._failed = True
            self.report("failed", code=EXIT_POOL_FAILED, message=failure_text(name, reply))

    # ---- draining and figures ---------------------------------------------------------

    def drain(self) -> None:
        """The master's drain signal: stop taking connections; finish once every link has
        gone."""
        if self._draining:
            return
        self._draining = True
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(self.listener.fileno())
        self.listener.close()
        self._check_drained()

    def _check_drained(self) -> None:
        if self._draining and not self.links and self._done is not None:
            self._done.set()

    async def _close_pools(self) -> None:
        self._failed = True  # processes that stop now are no crash loop
        waiting = [pool.dispatcher.drain(self.graceful_timeout) for pool in self.pools.values()]
        await asyncio.gather(*waiting, return_exceptions=True)
        for pool in self.pools.values():
            pool.dispatcher.close()

    async def _tick(self) -> None:
        last: dict[str, Any] = {}
        while True:
            if os.getppid() != self.master_pid:
                log.warning("cpu tier: the master is gone; exiting")
                os._exit(1)
            figures = {name: dict(pool.stats()) for name, pool in sorted(self.pools.items())}
            if figures != last:
                self.report("stats", pools=figures, links=len(self.links))
                last = figures
            await asyncio.sleep(STATS_PERIOD)
