"""HUP: a rolling reload under continuous client load loses no request, and serves the code
that is on disk now; a replacement that cannot boot leaves the old workers serving."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from runner_support import APPS, Load, Server, wait_until

HUPS = 4


def _wait_for_new_workers_and_traffic(server: Server, before: set[int], load: Load) -> None:
    wait_until(lambda: not (server.worker_pids() & before), 30, "old workers to exit")
    served = load.ok
    wait_until(lambda: load.ok > served + 20, 10, "requests after the reload")


def _write_app(folder: Path, version: str) -> None:
    source = (APPS / "hello.py").read_text().replace('VERSION = "v1"', f'VERSION = "{version}"')
    (folder / "reload_app.py").write_text(source)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "socket_mode",
    [
        pytest.param("--no-reuse-port", id="shared-socket"),
        pytest.param("--reuse-port", id="reuse-port"),
    ],
)
def test_hup_reloads_under_load_without_failed_requests_and_serves_new_code(
    launch: Callable[..., Server], tmp_path: Path, socket_mode: str
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    _write_app(app_dir, "v1")
    server = launch("reload_app:application", "--workers", "2", socket_mode, app_dir=app_dir)
    assert server.port is not None
    with Load(server.port, fresh=1, kept=1, seconds=60) as load:
        wait_until(lambda: load.ok > 20, 10, "load to start")
        for round_number in range(1, HUPS + 1):
            before = server.worker_pids()
            if round_number == 2:
                _write_app(app_dir, "v2-changed-on-disk")
            server.send_signal(signal.SIGHUP)
            server.wait_for_log(r"Reload complete", timeout=30, count=round_number)
            _wait_for_new_workers_and_traffic(server, before, load)
        assert load.last_version == "v2-changed-on-disk"
    assert load.failures == []
    assert load.ok > 100
    assert load.versions["v1"] > 0 and load.versions["v2-changed-on-disk"] > 0
    assert server.stop() == 0


def test_a_replacement_that_cannot_boot_leaves_the_old_workers_serving(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    _write_app(app_dir, "v1")
    server = launch("reload_app:application", "--workers", "2", app_dir=app_dir)
    before = server.worker_pids()
    (app_dir / "reload_app.py").write_text("def broken(:\n    pass\n")
    server.send_signal(signal.SIGHUP)
    log = server.wait_for_log(r"reload abandoned")
    assert "syntax error in" in log
    assert server.worker_pids() == before
    for _ in range(10):
        status, body = server.get_json("/pid")
        assert status == 200 and body["version"] == "v1"
    # Fixed code on disk: the next HUP completes.
    _write_app(app_dir, "v3")
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Reload complete", timeout=30)
    wait_until(lambda: not (server.worker_pids() & before), 30, "old workers to exit")
    assert server.get_json("/pid")[1]["version"] == "v3"
    shutil.rmtree(app_dir / "__pycache__", ignore_errors=True)
