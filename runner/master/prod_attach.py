"""Wire the production master (issue 5) into `master.Master`: `attach` before it runs,
`preload` for `--preload`. The behaviour lives in `prod_master.Production` (decisions, control
and metrics servers), `prod_worker` (each worker's side) and `socketsets` (--reuse-port)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..sockets.listener_sets import ListenerSets
from .prod_master import Production, WorkerRef

log = logging.getLogger("tornado_run.master")


def preload(settings: Any) -> None:
    """`--preload`: import the app's module here, in the master, before any fork, so workers
    share its memory pages; they still resolve MODULE:ATTR (and call a factory) themselves.

    Raises AppLoadError/UsageError like a worker's import would.
    """
    from ..worker.appload import _import, add_app_dir

    threads_before = threading.active_count()
    add_app_dir(settings.app_dir)
    _import(settings.app.split(":", 1)[0], settings.app_dir)
    if threading.active_count() > threads_before:
        log.warning(
            "--preload: importing %s started threads in the master; threads do not survive "
            "the fork into workers (start them in a --factory instead)",
            settings.app,
        )
    log.info(
        "--preload: %s imported in the master; HUP restarts workers on this code", settings.app
    )


def attach(master: Any) -> Production:
    """Wire `Production` into a `master.Master` before it runs: its servers become extra
    readers, its checks a tick hook, and every forked worker gets `prod_worker.prepare` (own
    reuse-port sockets, umask, identity, stack dump) and the loop watchdog's tick hook.

    Raises UsageError when the control socket or --metrics cannot be bound.
    """
    prod = Production(master.settings, lambda: _refs(master), version=_version())
    prod.open()
    prod.sets = ListenerSets(master.sockets, master.settings.backlog)
    if prod.sets.active:
        sets = prod.sets
        master.prefork_hooks.append(lambda ctx: sets.assign(master, ctx))
    for fd in prod.fds():
        master.extra_readers[fd] = prod.service
    master.tick_hooks.append(_MasterHook(prod).on_turn)
    master.child_hooks.append(lambda ctx: _prepare_child(prod, ctx))
    return prod


def _refs(master: Any) -> list[WorkerRef]:
    return [WorkerRef(w.worker_id, w.pid, slot) for w, slot in master.views()]


def _version() -> str:
    from .. import __version__

    return __version__


def _prepare_child(prod: Production, ctx: Any) -> None:
    from ..worker import prod_worker

    prod.close_in_child()
    if prod.sets is not None:
        prod.sets.keep_only(ctx)
    ctx.sockets = prod_worker.prepare(ctx.settings, ctx.sockets)
    ctx.tick_hooks.append(prod_worker.loop_hook(ctx.settings))


class _MasterHook:
    """Runs on every turn of the master's loop: acts on decisions, notices deaths."""

    def __init__(self, prod: Production) -> None:
        self.prod = prod
        self.known: dict[int, bool] = {}  # pid -> was retiring at the last turn
        self.recycling: dict[int, str] = {}  # pid -> reason of its pending recycle

    def on_turn(self, master: Any) -> None:
        self._notice_deaths(master)
        if self.prod.sets is not None:
            self.prod.sets.maintain(master)
        if master.stopping:
            return
        for decision in self.prod.check():
            if decision.kind == "reload":
                log.info("%s; reloading workers", decision.reason)
                master.handle_hup()
                continue
            worker = master.workers.get(decision.pid)
            if worker is None or worker.retiring:
                continue
            log.info(
                "recycling worker %d (pid %d): %s; its replacement starts first",
                worker.worker_id,
                worker.pid,
                decision.reason,
            )
            # Marking it as of an older generation hands it to the rolling replacement.
            worker.generation = min(worker.generation, master.generation - 1)
            self.recycling[worker.pid] = decision.reason.split(":", 1)[0]
        for pid in list(self.recycling):
            if master.reload_abandoned == master.generation and pid in master.workers:
                self.prod.recycle_failed(pid)

    def _notice_deaths(self, master: Any) -> None:
        for pid, was_retiring in list(self.known.items()):
            if pid in master.workers:
                continue
            del self.known[pid]
            reason = self.recycling.pop(pid, None) or ("retired" if was_retiring else "crash")
            self.prod.worker_gone(pid, reason)
        for pid, worker in master.workers.items():
            if pid not in self.known:
                self.prod.worker_started(pid)
            self.known[pid] = worker.retiring
