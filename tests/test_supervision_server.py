"""The production master with real tornado-run processes on loopback: blocked-loop reports,
heartbeat timeout, recycling, status, metrics, privilege drop and --reload."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from runner_support import Server, http_get, run_cli, wait_until
from supervision_support import PROD_APPS, Load, connection_spread, get_pid, line_of, status


def test_cpu_loop_past_block_warn_logs_the_handler_file_and_line(
    launch: Callable[..., Server],
) -> None:
    server = launch("prodapp:application", "--block-warn", "100", app_dir=PROD_APPS)
    assert server.port is not None
    get_pid(server.port, "/cpu?ms=300")
    log = server.wait_for_log(r"event loop blocked for \d+ ms")
    assert f'prodapp.py", line {line_of("CPU-LOOP")}, in burn_cpu' in log
    assert "in get" in log
    assert "tornado_run/runner" not in log.split("event loop blocked")[1].split("[INFO]")[0]
    assert server.stop() == 0


@pytest.mark.timeout(60)
def test_handler_stuck_in_sleep_past_timeout_is_dumped_and_replaced(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    pid_file = tmp_path / "app.pid"
    server = launch(
        "prodapp:application", "--timeout", "2", "--pid", str(pid_file), app_dir=PROD_APPS
    )
    assert server.port is not None
    (stuck,) = server.worker_pids()
    with pytest.raises(OSError):
        http_get(server.port, "/hang?s=30", timeout=20)
    log = server.wait_for_log(r"worker \d+ \(pid \d+\) was killed by SIGKILL")
    assert "no heartbeat for" in log
    assert "after missing its heartbeat" in log, "not logged as an ordinary crash"
    assert f'prodapp.py", line {line_of("HANG-LINE")} in get' in log
    new_pid = wait_until(lambda: server.worker_pids() - {stuck}, 15, "a replacement")
    assert get_pid(server.port)["pid"] in new_pid
    assert status(Path(f"{pid_file}.ctl")).restarts == {"timeout": 1}
    assert server.stop() == 0


@pytest.mark.timeout(60)
def test_max_requests_recycles_the_worker_without_a_failed_request(
    launch: Callable[..., Server],
) -> None:
    server = launch("prodapp:application", "--max-requests", "30", app_dir=PROD_APPS)
    assert server.port is not None
    (first,) = server.worker_pids()
    with Load(server.port, fresh=0, kept=2) as load:
        load.wait_for(30)
        server.wait_for_log(r"recycling worker 0 \(pid \d+\): max-requests")
        wait_until(lambda: first not in server.worker_pids(), 20, "the old worker to exit")
        load.wait_for(20)
    assert load.failures == []
    assert len(load.pids) >= 2, "requests were served by the replacement too"
    assert server.stop() == 0


@pytest.mark.timeout(90)
def test_recycling_two_reuse_port_workers_leaves_no_socket_set_unserved(
    launch: Callable[..., Server],
) -> None:
    server = launch(
        "prodapp:application", "--workers", "2", "--max-requests", "40", app_dir=PROD_APPS
    )
    assert server.port is not None
    originals = server.worker_pids()
    with Load(server.port, fresh=3, kept=0, seconds=60) as load:
        wait_until(lambda: not originals & server.worker_pids(), 40, "both workers recycled")
        served = load.ok
        wait_until(lambda: load.ok >= served + 120, 20, "requests after the recycling")
    assert load.failures == [], "a connection landed on a socket set nobody serves"
    assert len(server.worker_pids()) == 2
    assert server.stop() == 0


@pytest.mark.timeout(60)
def test_max_lifetime_replaces_workers_first_and_fails_no_request(
    launch: Callable[..., Server],
) -> None:
    server = launch("prodapp:application", "--workers", "2", "--max-lifetime", "1",
                    app_dir=PROD_APPS)  # fmt: skip
    assert server.port is not None
    first = server.worker_pids()
    with Load(server.port, fresh=2) as load:
        wait_until(lambda: not (server.worker_pids() & first), 30, "both workers recycled")
        load.wait_for(20)
    log = server.log()
    assert log.count("max-lifetime: running for") >= 2
    recycle = log.index("recycling worker 0")
    replacement_ready = re.compile(r"worker [2-9] \(pid \d+\) ready").search(log, recycle)
    old_stopped = re.compile(r"worker 0 \(pid \d+\) stopped").search(log, recycle)
    assert replacement_ready and old_stopped
    assert replacement_ready.start() < old_stopped.start(), "the replacement serves first"
    assert load.failures == []
    assert server.stop() == 0


@pytest.mark.timeout(60)
def test_memory_leaking_worker_is_recycled_at_max_memory(launch: Callable[..., Server]) -> None:
    server = launch("prodapp:application", "--max-memory", "80", app_dir=PROD_APPS)
    assert server.port is not None
    (leaky,) = server.worker_pids()
    for _ in range(4):
        get_pid(server.port, "/leak?mb=20")
    log = server.wait_for_log(r"recycling worker 0 \(pid \d+\): max-memory", timeout=20)
    assert "consecutive samples" in log
    wait_until(lambda: leaky not in server.worker_pids(), 20, "the leaky worker to exit")
    assert get_pid(server.port)["pid"] != leaky
    assert server.stop() == 0


def test_status_and_metrics_show_every_worker(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    pid_file = tmp_path / "app.pid"
    server = launch(
        "prodapp:application",
        "--workers", "2", "--pid", str(pid_file), "--metrics", "127.0.0.1:0",
        app_dir=PROD_APPS,
    )  # fmt: skip
    assert server.port is not None
    for _ in range(6):
        get_pid(server.port)
    pids = server.worker_pids()
    result = run_cli("status", "--pid", str(pid_file))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"master pid {server.pid}, up ")
    assert {int(line.split()[1]) for line in lines[2:]} == pids
    snapshot = status(Path(f"{pid_file}.ctl"))
    wait_until(lambda: sum(w.requests for w in status(Path(f"{pid_file}.ctl")).workers) >= 6,
               5, "request counters")  # fmt: skip
    assert {w.pid for w in snapshot.workers} == pids
    metrics_port = int(server.wait_for_log(r"metrics on").split("metrics on http://127.0.0.1:")[1]
                       .split("/")[0])  # fmt: skip
    reply = http_get(metrics_port, "/metrics")
    assert reply.status == 200
    families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
    samples = families["tornado_run_worker_requests"].samples
    assert {int(s.labels["pid"]) for s in samples} == pids
    assert sum(s.value for s in samples) >= 6
    assert server.stop() == 0
    assert not Path(f"{pid_file}.ctl").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs a root master")
def test_user_nobody_runs_workers_as_nobody(launch: Callable[..., Server], tmp_path: Path) -> None:
    server = launch(
        "prodapp:application", "--user", "nobody", "--umask", "027", app_dir=PROD_APPS,
        **_preloading_tornado_web(tmp_path),
    )  # fmt: skip
    assert server.port is not None
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    assert get_pid(server.port)["uid"] == nobody
    (worker,) = server.workers()
    assert worker.uids().real == worker.uids().effective == worker.uids().saved == nobody
    assert server.stop() == 0


def _preloading_tornado_web(tmp_path: Path) -> dict[str, object]:
    """This machine's Python lives under /root (mode 0700), which nobody cannot read; a
    sitecustomize imports tornado.web in the master so workers need no further stdlib file."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import tornado.web  # noqa: F401\n")
    return {"env": {"PYTHONPATH": str(site)}}


def test_bad_user_group_and_umask_are_usage_errors() -> None:
    for args, needle in [
        (["--user", "no-such-user-xyz"], "--user 'no-such-user-xyz': no such user"),
        (["--group", "no-such-group-xyz"], "--group 'no-such-group-xyz': no such group"),
        (["--umask", "999"], "--umask '999'"),
        (["--max-requests", "-5"], "--max-requests '-5'"),
        (["--block-warn", "soon"], "--block-warn 'soon'"),
        (["--metrics", "nowhere"], "--metrics 'nowhere'"),
        (["--max-requests-jitter", "5"], "needs --max-requests"),
    ]:
        result = run_cli("prodapp:application", "--app-dir", str(PROD_APPS), "--check", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.timeout(60)
def test_reload_restarts_workers_when_a_source_file_changes(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(PROD_APPS / "prodapp.py", app_dir / "devapp.py")
    server = launch("devapp:application", "--reload", app_dir=app_dir)
    assert server.port is not None
    assert get_pid(server.port)["version"] == "v1"
    source = (app_dir / "devapp.py").read_text().replace('VERSION = "v1"', 'VERSION = "v2"')
    (app_dir / "devapp.py").write_text(source)
    server.wait_for_log(r"--reload: changed .*devapp\.py", timeout=15)
    wait_until(lambda: get_pid(server.port)["version"] == "v2", 20, "the new code")  # type: ignore[arg-type]
    assert server.stop() == 0


def test_usr2_is_not_fatal_to_a_worker(launch: Callable[..., Server]) -> None:
    """The stack-dump signal prints stacks and leaves the worker serving."""
    server = launch("prodapp:application", app_dir=PROD_APPS)
    assert server.port is not None
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGUSR2)
    server.wait_for_log(r"Current thread 0x")
    assert get_pid(server.port)["pid"] == worker
    assert server.stop() == 0


@pytest.mark.timeout(150)
@pytest.mark.parametrize("mode", ["--reuse-port", "--no-reuse-port"])
def test_ten_hups_under_load_fail_no_request_and_serve_changed_code(
    launch: Callable[..., Server], tmp_path: Path, mode: str
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(PROD_APPS / "prodapp.py", app_dir / "hupapp.py")
    server = launch("hupapp:application", "--workers", "2", mode, app_dir=app_dir)
    assert server.port is not None
    with (
        Load(server.port, fresh=2) as fresh,
        Load(server.port, fresh=0, kept=2) as kept,
    ):
        fresh.wait_for(20)
        for round_number in range(1, 11):
            if round_number == 5:
                source = (app_dir / "hupapp.py").read_text().replace('"v1"', '"v2"')
                (app_dir / "hupapp.py").write_text(source)
            old = server.worker_pids()
            server.send_signal(signal.SIGHUP)
            server.wait_for_log(r"Reload complete", timeout=30, count=round_number)
            wait_until(lambda old=old: not (server.worker_pids() & old), 30, "old workers to go")
            fresh.wait_for(10)
            kept.wait_for(10)
    assert fresh.failures == [] and kept.failures == []
    assert fresh.versions["v1"] > 0 and fresh.versions["v2"] > 0
    assert get_pid(server.port)["version"] == "v2"
    assert server.stop() == 0


def test_preload_imports_in_the_master_and_hup_keeps_that_code(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(PROD_APPS / "prodapp.py", app_dir / "preapp.py")
    server = launch("preapp:application", "--preload", app_dir=app_dir)
    assert server.port is not None
    assert "--preload: preapp:application imported in the master" in server.log()
    source = (app_dir / "preapp.py").read_text().replace('"v1"', '"v2"')
    (app_dir / "preapp.py").write_text(source)
    before = server.worker_pids()
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Reload complete", timeout=30)
    wait_until(lambda: not (server.worker_pids() & before), 30, "old workers to exit")
    assert get_pid(server.port)["version"] == "v1", "forked from the master's import"
    assert server.stop() == 0


def test_metrics_port_in_use_is_a_usage_error_and_leaves_no_control_socket(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        pid_file = tmp_path / "app.pid"
        result = run_cli(
            "prodapp:application", "--app-dir", str(PROD_APPS), "--bind", "127.0.0.1:0",
            "--pid", str(pid_file), "--metrics", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"--metrics '127.0.0.1:{port}'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not Path(f"{pid_file}.ctl").exists()


def test_preload_with_reload_is_a_usage_error() -> None:
    result = run_cli(
        "prodapp:application", "--app-dir", str(PROD_APPS), "--check", "--preload", "--reload"
    )
    assert result.returncode == 2
    assert "--reload with --preload" in result.stderr


def test_reuse_port_spreads_connections_also_after_a_worker_is_killed(
    launch: Callable[..., Server],
) -> None:
    server = launch("prodapp:application", "--workers", "2", "--reuse-port", app_dir=PROD_APPS)
    assert server.port is not None
    spread = connection_spread(server.port)
    assert len(spread) == 2 and min(spread.values()) >= 8, spread
    victim = min(server.worker_pids())
    os.kill(victim, signal.SIGKILL)
    server.wait_for_log(r"worker \d+ \(pid \d+\) ready", count=3)
    spread = connection_spread(server.port)
    assert victim not in spread
    assert len(spread) == 2 and min(spread.values()) >= 8, "the replacement gets its share"
    assert server.stop() == 0


def test_no_master_mode_also_reports_blocked_loops_and_survives_usr2(
    launch: Callable[..., Server],
) -> None:
    server = launch(
        "prodapp:application", "--no-master", "--block-warn", "100", app_dir=PROD_APPS,
        wait_ready=False,
    )  # fmt: skip
    assert server.port is not None
    port = server.port
    wait_until(lambda: _answers(port), 15, "the server to answer")
    get_pid(port, "/cpu?ms=300")
    log = server.wait_for_log(r"event loop blocked for \d+ ms")
    assert f"line {line_of('CPU-LOOP')}, in burn_cpu" in log
    os.kill(server.pid, signal.SIGUSR2)
    server.wait_for_log(r"Current thread 0x")
    assert get_pid(port)["pid"] == server.pid
    assert server.stop() == 0


def _answers(port: int) -> bool:
    try:
        get_pid(port)
    except OSError:
        return False
    return True
