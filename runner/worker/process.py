"""A worker process: choose the loop, load the app, serve on the inherited sockets, report
readiness and heartbeats to the master, and drain before exiting on TERM.

The drain closes HTTP connections and WebSockets at the same time. The WebSocket close code
comes from the worker's scoreboard slot, where the master writes why it sends the TERM
before sending it: 1012 when the worker is replaced, 1001 when the server stops or when
there is no master.

`run_worker` is also the whole server in `--no-master` mode (then there is no master to
report to, and the sockets are this process's own).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from tornado.ioloop import PeriodicCallback

from .. import lifecycle
from ..control.channel import DRAINING, READY, STOP_UNKNOWN, EventWriter, Scoreboard, WorkerSlot
from ..errors import EXIT_FAILURE, EXIT_OK, AppLoadError, RunnerError, format_error
from ..logsetup import reopen_log_files
from ..settings.options import Settings
from . import accesslog
from .appload import load_application
from .loops import loop_factory
from .servers import WorkerServer, build_server
from .watchdog import LoopWatchdog, install_stack_dump
from .websockets import CloseResult, WebSocketRegistry, close_code_for

log = logging.getLogger("tornado_run.worker")

TICK_SECONDS = 0.5
"""How often the loop stamps its heartbeat, publishes counters and checks its parent."""
# SIGUSR2 is left alone: it dumps every thread's stack (faulthandler is armed on it).
_IGNORED_SIGNALS = ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGWINCH")


@dataclass
class WorkerContext:
    """What a worker gets from its master (or from the CLI with --no-master)."""

    settings: Settings
    sockets: list[socket.socket]
    worker_id: int = 0
    worker_count: int = 1
    tier_address: str | None = None  # the CPU tier's socket (None: process pools are local)
    master_pid: int | None = None  # None: --no-master
    board: Scoreboard | None = None
    slot: int | None = None
    events_fd: int | None = None


def run_worker(ctx: WorkerContext) -> int:
    """Serve until told to stop; return the process exit code (0, 1, 2 or 3)."""
    install_stack_dump()  # SIGUSR2, which the master sends to a hung worker
    _export_environment(ctx)
    if ctx.master_pid is not None:
        _die_with_parent(ctx.master_pid)
    try:
        factory = loop_factory(ctx.settings.loop)
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(Worker(ctx).serve())
    except Exception:
        log.exception("worker %d failed", ctx.worker_id)
        return EXIT_FAILURE


def _export_environment(ctx: WorkerContext) -> None:
    os.environ[lifecycle.ENV_WORKER_COUNT] = str(ctx.worker_count)
    if ctx.tier_address:
        os.environ[lifecycle.ENV_CPU_TIER] = ctx.tier_address
    else:
        os.environ.pop(lifecycle.ENV_CPU_TIER, None)
    os.environ[lifecycle.ENV_GRACEFUL_TIMEOUT] = str(ctx.settings.graceful_timeout)
    os.environ[lifecycle.ENV_POOLS_CONFIG] = ctx.settings.pools_json()


def _die_with_parent(master_pid: int) -> None:
    """Have the kernel kill this worker when the master dies (Linux); the tick checks too."""
    if not lifecycle.set_parent_death_signal():
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable; relying on the parent check")
    if os.getppid() != master_pid:
        os._exit(EXIT_FAILURE)


class Worker:
    """One serving process; `serve()` is its main coroutine."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.server: WorkerServer | None = None
        self.slot = (
            WorkerSlot(ctx.board, ctx.slot)
            if ctx.board is not None and ctx.slot is not None
            else None
        )
        self.events = EventWriter(ctx.events_fd) if ctx.events_fd is not None else None
        block_warn = ctx.settings.block_warn / 1000
        self.watchdog = LoopWatchdog(block_warn if block_warn > 0 else None)
        self.websockets = WebSocketRegistry()
        self._stop = asyncio.Event()
        self._stopping = False

    async def serve(self) -> int:
        self._install_signals()
        self.websockets.install()  # before the app's handler classes are imported
        try:
            app = await load_application(
                self.settings.app, self.settings.app_dir, self.settings.factory
            )
            accesslog.install(app, self.settings.access_log_format, self.settings.access_log_json)
            await lifecycle.run_boot_hooks()  # e.g. declaring process pools to the CPU tier
            server = build_server(self.settings, app)
        except RunnerError as exc:
            return self._boot_failed(exc)
        except lifecycle.BootFailed as exc:
            return self._boot_failed(AppLoadError(str(exc)))
        self.server = server
        server.add_sockets(self.ctx.sockets)
        ticker = PeriodicCallback(self.tick, TICK_SECONDS * 1000)
        ticker.start()
        self.watchdog.start()
        lifecycle.add_stats_provider("loop", self.watchdog.stats)
        self._publish(state=READY)
        if self.events is not None:
            self.events.send("ready", pid=os.getpid())
        if self.ctx.master_pid is None:
            log.info("Ready: serving without a master (pid %d)", os.getpid())
        await self._stop.wait()
        return await self._shutdown(ticker)

    def _boot_failed(self, exc: RunnerError) -> int:
        message = str(exc)
        if self.events is not None:
            self.events.send("failed", code=exc.code, message=message)
        else:
            sys.stderr.write(format_error(message))
        return exc.code

    async def _shutdown(self, ticker: PeriodicCallback) -> int:
        assert self.server is not None
        started = time.monotonic()
        timeout = self.settings.graceful_timeout
        self._publish(state=DRAINING)
        code = close_code_for(self.stop_reason())
        closing = asyncio.ensure_future(self.websockets.close_all(code))
        leftover = await self.server.drain(timeout)
        await self._websockets_closed(code, closing)
        if leftover:
            log.warning(
                "worker %d: closed %d connection(s) still open at the graceful timeout (%gs)",
                self.ctx.worker_id,
                leftover,
                timeout,
            )
        remaining = max(0.0, timeout - (time.monotonic() - started))
        await lifecycle.run_shutdown_hooks(remaining)
        ticker.stop()
        return EXIT_OK

    async def _websockets_closed(self, code: int, closing: Awaitable[CloseResult]) -> None:
        """Wait for the WebSocket closing that ran beside the HTTP drain, close those upgraded
        while the HTTP drain finished their requests, and log what was done."""
        result = await closing
        if self.websockets.tracked:
            late = await self.websockets.close_all(code)
            result = CloseResult(result.closed + late.closed, result.cut + late.cut)
        if result.closed:
            log.info(
                "worker %d: closed %d WebSocket(s) with %d, %d without a close handshake; "
                "%d error(s) from writes to them after the close not logged",
                self.ctx.worker_id,
                result.closed,
                code,
                result.cut,
                self.websockets.closed_writes,
            )

    def stop_reason(self) -> int:
        """Why the master sent TERM (`channel.STOP_*`), read from this worker's slot."""
        if self.slot is None:
            return STOP_UNKNOWN
        return self.slot.board.stop_reason(self.slot.index)

    def tick(self) -> None:
        """Runs on the loop: stamp the heartbeat, publish counters, check the parent."""
        if self.ctx.master_pid is not None and os.getppid() != self.ctx.master_pid:
            log.warning("worker %d: the master is gone; exiting", self.ctx.worker_id)
            os._exit(EXIT_FAILURE)
        self._publish()

    def _publish(self, **changes: object) -> None:
        if self.slot is None:
            return
        server = self.server
        if server is not None:
            changes.setdefault("requests", server.requests)
            changes.setdefault("in_flight", server.in_flight())
            changes.setdefault("connections", server.connection_count)
            if server.acceptor is not None:
                changes.setdefault("cap_hits", server.acceptor.cap_hits)
                changes.setdefault("accept_refused", server.acceptor.refused)
        changes.setdefault("websockets", self.websockets.count)
        changes.setdefault("stats", lifecycle.collect_stats())
        self.slot.view.max_lag_ms = self.watchdog.stats()["max_lag_ms"]
        self.slot.view.blocked_episodes = self.watchdog.episodes
        self.slot.publish(**changes)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        # Under a master, a terminal's Ctrl-C reaches master and workers alike, and the
        # master's TERM may come first: the worker's own INT must not count as a second one.
        # The master escalates a second INT itself (QUIT to every worker).
        on_int = self._on_int if self.ctx.master_pid is None else self.request_stop
        loop.add_signal_handler(signal.SIGINT, on_int)
        loop.add_signal_handler(signal.SIGQUIT, self.stop_now)
        loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)
        for name in _IGNORED_SIGNALS:
            if hasattr(signal, name):
                loop.add_signal_handler(getattr(signal, name), lambda: None)

    def request_stop(self) -> None:
        """Begin a graceful stop (TERM, first INT)."""
        self._stopping = True
        self._stop.set()

    def _on_int(self) -> None:
        """Without a master: the first INT drains, a second one stops at once."""
        if self._stopping:
            self.stop_now()
        self.request_stop()

    def stop_now(self) -> None:
        """Immediate stop (QUIT, second INT): exit without draining."""
        logging.shutdown()
        os._exit(EXIT_OK)
