"""examples/async_tasks.py: each way of running a blocking call does what its docstring says."""

from __future__ import annotations

import time

from examples_support import InFlight, assert_held_up, serve

APP = "examples.async_tasks:application"


def test_blocking_handler_holds_up_the_next_request() -> None:
    with serve(APP, ready_path="/jobs") as app:
        slow = InFlight(app, "/blocking?ms=1200")
        slow.start()
        time.sleep(0.3)
        sent = time.monotonic()
        fast = app.get("/jobs")
        assert fast.status == 200
        assert_held_up(fast, sent, slow)


def test_thread_and_coroutine_leave_the_loop_free() -> None:
    with serve(APP, ready_path="/jobs") as app:
        for path in ("/thread?ms=1500", "/coroutine?ms=1500", "/command?ms=1500"):
            slow = InFlight(app, path)
            slow.start()
            time.sleep(0.3)
            assert app.get("/jobs").status == 200
            assert slow.finished_at is None, f"/jobs should answer while {path} runs"
            answer = slow.wait()
            assert answer.status == 200, answer.body
        assert app.get("/command?ms=10").json() == {"variant": "command", "returncode": 0}


def test_background_answers_at_once_and_the_job_still_runs() -> None:
    with serve(APP, ready_path="/jobs") as app:
        before = app.get("/jobs").json()["jobs_done"]
        answer = app.get("/background?ms=300")
        assert answer.status == 200
        assert answer.json() == {"variant": "background", "queued": True}
        assert app.get("/jobs").json()["jobs_done"] == before, "answered before the job ended"
        deadline = time.monotonic() + 10
        while app.get("/jobs").json()["jobs_done"] == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.get("/jobs").json()["jobs_done"] == before + 1


def test_timeout_answers_504_before_the_call_would_end() -> None:
    with serve(APP, ready_path="/jobs") as app:
        answer = app.get("/timeout?ms=3000")
        assert answer.status == 504
        assert answer.seconds < 2.0  # the call takes 3 s; the timeout is 0.05 s
        assert app.get("/timeout?ms=0").json() == {"variant": "timeout"}


def test_bad_ms_is_a_400_naming_the_value() -> None:
    with serve(APP, ready_path="/jobs") as app:
        answer = app.get("/thread?ms=lots")
        assert answer.status == 400
        assert b"lots" in answer.body
