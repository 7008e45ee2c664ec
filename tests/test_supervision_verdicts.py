"""The master's supervision verdicts and status services on real child processes: heartbeat
timeout (one verdict; the stacks of a real hung process), recycling verdicts, --reload triggers
and the status snapshot over the control socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from tornado_run.runner.control import status
from tornado_run.runner.control.channel import BOOTING, READY, SlotView
from tornado_run.runner.control.snapshot import Snapshot
from tornado_run.runner.master.services import ControlServices
from tornado_run.runner.master.supervision import Supervision, WorkerView
from tornado_run.runner.settings.options import Settings
from tornado_run.runner.worker.watchdog import STACK_DUMP_SIGNAL


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "control": str(tmp_path / "ctl.sock"),
        "app_dir": tmp_path,
        "timeout": 0,
        "reuse_port": False,
    }
    values.update(overrides)
    return Settings(app="app:application", **values)


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
def test_silent_worker_gets_one_hung_verdict_and_its_stacks_can_be_dumped(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HUNG_CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        slot = SlotView(pid=child.pid, state=READY, heartbeat=time.monotonic() - 5)
        supervision = Supervision(settings(tmp_path, timeout=2))
        (verdict,) = supervision.verdicts([WorkerView(0, child.pid, slot)])
        assert (verdict.kind, verdict.pid) == ("hung", child.pid)
        assert "no heartbeat for" in verdict.reason and "--timeout 2" in verdict.reason
        assert supervision.verdicts([WorkerView(0, child.pid, slot)]) == [], "named once"
        os.kill(child.pid, STACK_DUMP_SIGNAL)  # what the master does on the verdict
        time.sleep(0.5)
        assert child.poll() is None, "the stack dump does not end the process"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=5) == -9
        supervision.worker_gone(child.pid)
    finally:
        if child.poll() is None:
            child.kill()
        _, err = child.communicate(timeout=10)
    assert b"handler_stuck_in_sleep" in err


def test_worker_with_a_fresh_heartbeat_is_left_alone(tmp_path: Path) -> None:
    slot = SlotView(pid=os.getpid(), state=READY, heartbeat=time.monotonic())
    supervision = Supervision(settings(tmp_path, timeout=2))
    assert supervision.verdicts([WorkerView(0, os.getpid(), slot)]) == []
    booting = SlotView(pid=os.getpid(), state=BOOTING, heartbeat=time.monotonic() - 100)
    assert supervision.verdicts([WorkerView(0, os.getpid(), booting)]) == [], (
        "a booting worker is judged by the boot, not the heartbeat"
    )


def test_recycle_verdict_once_per_worker_and_again_after_a_failed_replacement(
    tmp_path: Path,
) -> None:
    slot = SlotView(pid=os.getpid(), state=READY, heartbeat=time.monotonic(), requests=0)
    supervision = Supervision(settings(tmp_path, max_requests=10, max_requests_jitter=0))
    workers = [WorkerView(3, os.getpid(), slot)]
    supervision.worker_started(os.getpid())
    assert supervision.verdicts(workers) == []
    slot.requests = 10
    (verdict,) = supervision.verdicts(workers)
    assert (verdict.kind, verdict.worker_id, verdict.pid) == ("recycle", 3, os.getpid())
    assert "max-requests" in verdict.reason
    assert supervision.verdicts(workers) == [], "one verdict until the master acts"
    supervision.recycle_failed(os.getpid(), retry_after=0)
    assert [v.kind for v in supervision.verdicts(workers)] == ["recycle"]
    supervision.worker_gone(os.getpid())
    assert supervision.verdicts(workers) == [], "a gone worker has no recycling clock"


def test_changed_source_triggers_one_reload(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("x = 1\n")
    supervision = Supervision(settings(tmp_path, reload=True))
    assert supervision.verdicts([], now=time.monotonic() + 2) == []
    os.utime(app, ns=(time.time_ns(), time.time_ns() + 10**9))
    (verdict,) = supervision.verdicts([], now=time.monotonic() + 4)
    assert verdict.kind == "reload" and "app.py" in verdict.reason
    assert supervision.verdicts([], now=time.monotonic() + 6) == []


def test_status_reaches_the_master_through_its_control_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slots = [
        SlotView(pid=os.getpid(), state=READY, started=time.time() - 70, requests=42,
                 in_flight=1, stats={"loop": {"max_lag_ms": 120.0, "blocked_episodes": 2},
                                     "pools": {"thread": {"busy": 1, "queued": 4}}}),
        SlotView(pid=os.getppid(), state=READY, started=time.time() - 3),
    ]  # fmt: skip
    prod = ControlServices(
        settings(tmp_path),
        lambda: [WorkerView(i, s.pid, s) for i, s in enumerate(slots)],
        {"max-requests": 2},
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
    assert snapshot.restarts == {"max-requests": 2}


def _query_while_serving(prod: ControlServices) -> Snapshot:
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
