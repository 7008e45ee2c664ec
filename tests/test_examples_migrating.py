"""examples/migrating.py: run_on_executor as a drop-in, a named pool, and timed-out thread
work that stops at its next check_cancelled()."""

from __future__ import annotations

import time

from examples_support import serve

APP = "examples.migrating:application"


def test_run_on_executor_works_with_yield_and_with_a_named_pool() -> None:
    with serve(APP, ready_path="/stopped") as app:
        assert app.get("/legacy/7").json() == {"n": 7, "square": 49}
        assert app.get("/lookup/42").json() == {"id": 42, "name": "row 42"}


def test_report_within_the_timeout_answers_200() -> None:
    with serve(APP, ready_path="/stopped") as app:
        assert app.get("/report?rows=3").json() == {"rows": 3}
        assert app.get("/report?rows=lots").status == 400


def test_timed_out_report_answers_504_and_its_thread_stops_early() -> None:
    with serve(APP, ready_path="/stopped") as app:
        answer = app.get("/report?rows=50")  # 5 s of rows against a 1 s timeout
        assert answer.status == 504
        assert answer.seconds < 4.0
        deadline = time.monotonic() + 10
        while app.get("/stopped").json()["stopped_early"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.get("/stopped").json() == {"stopped_early": 1}
