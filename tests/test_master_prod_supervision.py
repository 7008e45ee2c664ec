"""The master's production checks on real child processes: heartbeat timeout (stacks, then
kill), recycling verdicts, --reload triggers and the status snapshot over the control socket."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado_run.runner.control import status
from tornado_run.runner.control.channel import BOOTING, READY, SlotView
from tornado_run.runner.control.snapshot import Snapshot
from tornado_run.runner.master.prod_master import Production, WorkerRef


def settings(tmp_path: Path, **overrides: object) -> SimpleNamespace:
    values: dict[str, object] = {
        "pid": None,
        "control": str(tmp_path / "ctl.sock"),
        "metrics": None,
        "app_dir": tmp_path,
        "timeout": 0,
        "reload": False,
        "reuse_port": False,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


HUNG_CHILD = textwrap.dedent(
    """
    import time
    from tornado_run.runner.worker.watchdog import install_stack_dump
    install_stack_dump()
    def handler_stuck_in_sleep():
        print("ready", flush=True)
        time.sleep(60)
    handler_stuck_in_sleep()
    """
)


@pytest.mark.timeout(30)
def test_silent_worker_dumps_its_stacks_then_is_killed(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HUNG_CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        slot = SlotView(pid=child.pid, state=READY, heartbeat=time.monotonic() - 5)
        prod = Production(settings(tmp_path, timeout=2), lambda: [WorkerRef(0, child.pid, slot)])
        prod.check()
        assert child.poll() is None, "the stack dump comes first"
        assert prod.wait_timeout() < 0.5, "the master wakes up in time for the kill"
        deadline = time.monotonic() + 10
        while child.poll() is None and time.monotonic() < deadline:
            prod.check()
            time.sleep(0.05)
        assert child.wait(timeout=5) == -9
        assert prod.timed_out(child.pid)
        assert prod.worker_gone(child.pid, "crash") == "timeout"
    finally:
        if child.poll() is None:
            child.kill()
        _, err = child.communicate(timeout=10)
    assert b"handler_stuck_in_sleep" in err


def test_worker_with_a_fresh_heartbeat_is_left_alone(tmp_path: Path) -> None:
    slot = SlotView(pid=os.getpid(), state=READY, heartbeat=time.monotonic())
    prod = Production(settings(tmp_path, timeout=2), lambda: [WorkerRef(0, os.getpid(), slot)])
    assert prod.check() == []
    booting = SlotView(pid=os.getpid(), state=BOOTING, heartbeat=time.monotonic() - 100)
    prod = Production(settings(tmp_path, timeout=2), lambda: [WorkerRef(0, os.getpid(), booting)])
    assert prod.check() == [], "a booting worker is judged by the boot, not the heartbeat"


def test_recycle_verdict_once_per_worker_and_again_after_a_failed_replacement(
    tmp_path: Path,
) -> None:
    slot = SlotView(pid=os.getpid(), state=READY, heartbeat=time.monotonic(), requests=0)
    prod = Production(
        settings(tmp_path, max_requests=10, max_requests_jitter=0),
        lambda: [WorkerRef(3, os.getpid(), slot)],
    )
    prod.worker_started(os.getpid())
    assert prod.check() == []
    slot.requests = 10
    (decision,) = prod.check()
    assert (decision.kind, decision.worker_id, decision.pid) == ("recycle", 3, os.getpid())
    assert "max-requests" in decision.reason
    assert prod.check() == [], "one verdict until the master acts"
    prod.recycle_failed(os.getpid(), retry_after=0)
    assert [d.kind for d in prod.check()] == ["recycle"]
    assert prod.worker_gone(os.getpid(), "max-requests") == "max-requests"
    assert prod.restarts == {"max-requests": 1}


def test_changed_source_triggers_one_reload(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("x = 1\n")
    prod = Production(settings(tmp_path, reload=True), lambda: [])
    prod.open()
    try:
        assert prod.check(now=time.monotonic() + 2) == []
        os.utime(app, ns=(time.time_ns(), time.time_ns() + 10**9))
        (decision,) = prod.check(now=time.monotonic() + 4)
        assert decision.kind == "reload" and "app.py" in decision.reason
        assert prod.check(now=time.monotonic() + 6) == []
    finally:
        prod.close()


def test_status_reaches_the_master_through_its_control_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slots = [
        SlotView(pid=os.getpid(), state=READY, started=time.time() - 70, requests=42,
                 in_flight=1, stats={"loop": {"max_lag_ms": 120.0, "blocked_episodes": 2},
                                     "pools": {"thread": {"busy": 1, "queued": 4}}}),
        SlotView(pid=os.getppid(), state=READY, started=time.time() - 3),
    ]  # fmt: skip
    prod = Production(
        settings(tmp_path), lambda: [WorkerRef(i, s.pid, s) for i, s in enumerate(slots)]
    )
    prod.open()
    assert prod.control_path == tmp_path / "ctl.sock"
    try:
        snapshot = _query_while_serving(prod)
    finally:
        prod.close()
    assert not (tmp_path / "ctl.sock").exists(), "the socket is removed at exit"
    assert [w.pid for w in snapshot.workers] == [os.getpid(), os.getppid()]
    first = snapshot.workers[0]
    assert (first.requests, first.in_flight, first.max_lag_ms) == (42, 1, 120.0)
    assert first.rss > 0 and first.pools == {"thread": {"busy": 1, "queued": 4}}
    assert status.format_table(snapshot).count("\n") == 3


def _query_while_serving(prod: Production) -> Snapshot:
    """Run the client in a child process while this process plays the master's loop."""
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, str(prod.control_path)], stdout=subprocess.PIPE
    )
    deadline = time.monotonic() + 20
    while client.poll() is None and time.monotonic() < deadline:
        prod.service()
        time.sleep(0.01)
    out, _ = client.communicate(timeout=5)
    assert client.returncode == 0
    return Snapshot.from_json(out.decode())


_CLIENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tornado_run.runner.control import control_socket as control
    print(control.query(Path(sys.argv[1]), timeout=10).to_json())
    """
)
