"""A process pool's children must not outlive the server that owns them, even when the master
is killed hard (supervisord's kill -9, an OOM kill) while a long task is running."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from runner_support import Server, wait_until

APPS = Path(__file__).resolve().parent / "apps_supervisor"


@pytest.mark.timeout(60)
def test_busy_pool_process_dies_with_a_killed_master(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    server = launch("pool_app:application", "--workers", "1", app_dir=APPS)
    mark = tmp_path / "started"
    request = threading.Thread(
        target=lambda: _get_ignoring_errors(server, f"/crunch?s=40&mark={mark}"), daemon=True
    )
    request.start()
    wait_until(mark.exists, 30, "the pool task to start")
    tree = psutil.Process(server.pid).children(recursive=True)
    assert len(tree) >= 3, f"expected worker, forkserver and pool child, got {tree}"

    psutil.Process(server.pid).send_signal(signal.SIGKILL)

    def all_gone() -> bool:
        return not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    wait_until(all_gone, 10, "every process of the killed master's tree to exit")
    request.join(timeout=15)


def _get_ignoring_errors(server: Server, path: str) -> None:
    # the server is killed under this request: that is the point of the test
    with contextlib.suppress(OSError):
        server.get(path, timeout=45)
