"""What the master serves to operators: the control socket (`tornado-run status`) and the
`--metrics` endpoint, both answered from the master's own poll loop with a `Snapshot` of
every worker."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..control import control_socket
from ..control.metrics import metrics_server
from ..control.pollserver import PollServer
from ..control.snapshot import ProcessSampler, Snapshot, WorkerSnapshot, worker_figures
from ..errors import UsageError
from ..settings.options import Settings
from .supervision import WorkerView

log = logging.getLogger("tornado_run.master")


class ControlServices:
    """The master's status and metrics servers; `workers` lists the live workers whenever a
    snapshot is taken, `restarts` counts replacements by reason."""

    def __init__(
        self,
        settings: Settings,
        workers: Callable[[], list[WorkerView]],
        restarts: Mapping[str, int],
        version: str = "",
        tier: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.restarts = restarts
        self.version = version
        self.tier = tier
        self.started = time.monotonic()
        self.control_path: Path | None = None
        self._servers: list[PollServer] = []
        self._child_servers: list[PollServer] = []
        self._sampler = ProcessSampler()

    def open(self) -> None:
        """Bind the control socket and --metrics; raises UsageError naming what failed (and
        leaves nothing bound behind)."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        pid_file = str(self.settings.pid) if self.settings.pid else None
        self.control_path = control_socket.control_path(
            self.settings.control, pid_file, os.getpid()
        )
        if self.control_path.parent == control_socket.default_dir():
            control_socket.remove_stale()
        try:
            server = control_socket.control_server(self.control_path, self.snapshot)
        except OSError as exc:
            raise UsageError(f"--control {str(self.control_path)!r}: {exc}") from None
        self._servers.append(server)
        address = self.settings.metrics
        if address:
            try:
                self._servers.append(metrics_server(address, self.snapshot))
            except (OSError, ValueError) as exc:
                raise UsageError(f"--metrics {address!r}: {exc}") from None
            host, port = self._servers[-1].listener.getsockname()[:2]
            log.info("metrics on http://%s:%d/metrics", host, port)

    def fds(self) -> list[int]:
        """Descriptors the master waits on; call `service()` when one is readable."""
        return [server.fileno() for server in self._servers]

    def service(self) -> None:
        """Answer status and metrics clients without blocking."""
        for server in self._servers:
            server.service()

    def close_in_child(self) -> None:
        """In a freshly forked worker: close the master's listening and client sockets without
        unlinking anything. Their epoll descriptors are among the master's descriptors, which
        the fork already closed; the selectors stay referenced so nothing closes that number
        again."""
        for server in self._servers:
            server.close_sockets()
        self._child_servers, self._servers = self._servers, []

    def close(self) -> None:
        """At the master's exit: close servers and remove the control socket."""
        for server in self._servers:
            server.close()
        self._servers = []
        if self.control_path is not None:
            control_socket.remove(self.control_path)

    def snapshot(self) -> Snapshot:
        """The current status of every worker (RSS and CPU % sampled now)."""
        views = self.workers()
        self._sampler.forget_except({view.pid for view in views})
        return Snapshot(
            master_pid=os.getpid(),
            uptime=time.monotonic() - self.started,
            workers=[self._worker_snapshot(view) for view in views],
            restarts=dict(self.restarts),
            version=self.version,
            tier=self.tier(),
        )

    def _worker_snapshot(self, view: WorkerView) -> WorkerSnapshot:
        slot = view.slot
        rss, cpu = self._sampler.sample(view.pid)
        figures = worker_figures(slot.stats if isinstance(slot.stats, dict) else {})
        return WorkerSnapshot(
            worker_id=view.worker_id,
            pid=view.pid,
            age=max(0.0, time.time() - slot.started) if slot.started else 0.0,
            state=slot.state_name,
            requests=slot.requests,
            in_flight=slot.in_flight,
            connections=slot.connections,
            cap_hits=slot.cap_hits,
            accept_refused=slot.accept_refused,
            websockets=slot.websockets,
            rss=rss,
            cpu_percent=cpu,
            max_lag_ms=max(float(slot.max_lag_ms), figures["max_lag_ms"]),
            blocked_episodes=max(int(slot.blocked_episodes), figures["blocked_episodes"]),
            pools=figures["pools"],
        )
