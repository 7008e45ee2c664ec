"""examples/streaming.py: chunks from a generator in a thread reach the client as produced."""

from __future__ import annotations

import http.client
import time

from examples_support import serve


def test_countdown_lines_arrive_one_by_one_in_order() -> None:
    with serve("examples.streaming:application", ready_path="/countdown/0") as app:
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=20)
        try:
            conn.request("GET", "/countdown/4?interval_ms=300")
            response = conn.getresponse()
            assert response.status == 200
            arrivals: list[tuple[float, bytes]] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                line = response.readline()
                if not line:
                    break
                arrivals.append((time.monotonic(), line))
        finally:
            conn.close()
    assert [line for _, line in arrivals] == [b"4\n", b"3\n", b"2\n", b"1\n", b"liftoff\n"]
    # The producer sleeps 4 x 0.3 s between lines: the first must come well before the last.
    assert arrivals[-1][0] - arrivals[0][0] > 0.6


def test_csv_export_is_complete_and_typed() -> None:
    with serve("examples.streaming:application", ready_path="/countdown/0") as app:
        answer = app.get("/export.csv?rows=2500")
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/csv")
        lines = answer.body.decode().splitlines()
        assert lines[0] == "id,square"
        assert len(lines) == 2501
        assert lines[-1] == f"2499,{2499 * 2499}"
        assert app.get("/export.csv?rows=many").status == 400
