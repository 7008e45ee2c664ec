"""The benchmark's quick mode (the CI smoke test): every row yields a number or a one-line skip,
and bad input is one line, never a traceback."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from examples_support import REPO_ROOT, example_module, free_port, serve

RUN = REPO_ROOT / "examples" / "bench" / "run.py"


def _bench(
    *args: str, path: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, str(RUN), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _rows(out: Path) -> list[dict[str, Any]]:
    payload = json.loads((out / "results.json").read_text())
    assert payload["machine"]["usable_cores"] >= 1
    return [row for section in payload["sections"] for row in section["rows"]]


@pytest.mark.timeout(120)
def test_quick_hello_section_measures_every_row(tmp_path: Path) -> None:
    done = _bench("--quick", "--only", "hello", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    rows = _rows(tmp_path)
    assert [row["name"] for row in rows][:3] == [
        "raw bind_sockets + fork_processes(2)",
        "tornado-run --workers 2 --loop asyncio",
        "tornado-run --workers 2 --loop uvloop",
    ]
    for row in rows:
        produced = row["values"].get("req_s") is not None and row["values"]["req_s"] > 0
        assert produced or row["note"], f"row {row['name']} has neither a figure nor a reason"
    tornado_run = rows[1]
    if shutil.which("wrk") is None and shutil.which("ab") is None:  # the row says why, in one line
        assert tornado_run["note"].startswith("no load tool found: install wrk")
        return
    assert tornado_run["note"] == ""
    assert tornado_run["values"]["req_per_cpu_s"] > 0
    assert tornado_run["values"]["pss_mib"] > 0
    assert tornado_run["values"]["respawn_ms"] is not None
    assert "| tornado-run --workers 2 --loop asyncio |" in done.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "chart.png").stat().st_size > 0
    else:  # the bench extra is not installed: one line says so, and the rest still ran
        assert "no chart: matplotlib is not installed" in done.stdout


@pytest.mark.timeout(120)
def test_quick_tier_section_gives_a_useful_share_for_every_row(tmp_path: Path) -> None:
    done = _bench("--quick", "--only", "tier", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["name"]: row for row in _rows(tmp_path)}
    assert set(rows) == {
        f"{ms} ms task, {way}"
        for ms in (2, 20)
        for way in ("@unblock(pool='process')", "blocking handler")
    }
    for name, row in rows.items():
        if row["note"]:  # no wrk/ab here: one line says why
            continue
        assert 0 < row["values"]["useful"] <= 1.05, name
        assert row["values"]["failed"] == 0, name


@pytest.mark.timeout(120)
def test_quick_websockets_section_counts_closes_across_hups(tmp_path: Path) -> None:
    done = _bench("--quick", "--only", "websockets", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    rows = _rows(tmp_path)
    assert rows and rows[0]["name"].startswith("tornado-run --workers 2")
    for row in rows:
        if row["note"]:
            continue
        values = row["values"]
        assert values["closes_1012"] >= values["sockets"]  # every socket closed at least once
        assert values["abnormal"] == 0
        assert values["requests"] > 0 and values["old_gone_s"] > 0


@pytest.mark.timeout(120)
@pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("openssl") is None,
    reason="the tls section needs wrk and openssl",
)
def test_quick_tls_section_measures_keep_alive_and_handshakes_for_both_servers(
    tmp_path: Path,
) -> None:
    done = _bench("--quick", "--only", "tls", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    rows = _rows(tmp_path)
    assert [row["name"] for row in rows] == [
        "raw HTTPServer(ssl_options) + fork_processes(2)",
        "tornado-run --workers 2 --certfile",
    ]
    for row in rows:
        assert row["note"] == "", row["note"]
        for key in ("kept_req_s", "kept_per_cpu_s", "hs_s", "hs_per_cpu_s"):
            assert row["values"][key] > 0, (row["name"], key)
        assert row["values"]["errors"] == 0


@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="the POST rows need wrk")
def test_quick_http_section_measures_fast_and_tornado_on_every_workload(tmp_path: Path) -> None:
    done = _bench("--quick", "--only", "http", "--out", str(tmp_path), timeout=170)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "results.json").read_text())
    sections = {section["key"]: section for section in payload["sections"]}
    assert set(sections) == {"http-hello", "http-json", "http-echo"}
    for section in sections.values():
        rows = {row["name"]: row for row in section["rows"]}
        for name in (
            "tornado-run --workers 2 --http fast",
            "tornado-run --workers 2 --http tornado",
        ):
            assert rows[name]["values"]["req_per_cpu_s"] > 0, (section["key"], name)
            assert rows[name]["values"]["errors"] == 0, (section["key"], name)


def test_missing_load_tools_skip_each_row_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = _bench("--quick", "--only", "async", "--out", str(tmp_path), path=str(empty))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    rows = _rows(tmp_path)
    assert rows
    for row in rows:
        assert "no load tool found" in row["note"]
        assert "apt-get install wrk" in row["note"]
        assert "\n" not in row["note"]


def test_unknown_section_is_a_usage_error(tmp_path: Path) -> None:
    done = _bench("--only", "helo", "--out", str(tmp_path))
    assert done.returncode == 2
    assert "'helo'" in done.stderr and "hello" in done.stderr
    assert "Traceback" not in done.stderr


def test_port_in_use_and_broken_peer_are_one_line_skips() -> None:
    harness = example_module("bench.harness")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = harness.Server("peer", [sys.executable, "-c", "pass"], port)
        with pytest.raises(harness.Skip, match=f"^port {port} is already in use$"):
            server.start()
    broken = harness.Server("peer", [sys.executable, "-c", "import no_such_peer"], free_port())
    with pytest.raises(harness.Skip) as skipped:
        broken.start(timeout=20)
    assert str(skipped.value) == (
        "peer exited with code 1: ModuleNotFoundError: No module named 'no_such_peer'"
    )
    broken.stop()


@pytest.mark.parametrize("tool", ["wrk", "ab"])
def test_each_load_tool_reports_requests_and_latency(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    loadgen = example_module("bench.loadgen")
    with serve("examples.bench.hello:application") as app:
        result = loadgen.closed_loop(f"http://127.0.0.1:{app.port}/", 8, 1, tool=tool)
    assert result.tool == tool
    assert result.requests > 0
    assert result.ok_per_second > 0
    assert result.non_2xx == 0
    assert result.p99_ms is not None and result.p99_ms >= (result.p50_ms or 0)


@pytest.mark.timeout(150)
def test_quick_transport_section_measures_every_peer_on_every_case(tmp_path: Path) -> None:
    done = _bench("--quick", "--only", "transport", "--out", str(tmp_path), timeout=140)
    assert done.returncode == 0, done.stderr
    sections = json.loads((tmp_path / "results.json").read_text())["sections"]
    process, threads = sections
    cases = [row["name"] for row in process["rows"]]
    assert cases[:2] == ["trivial call, one at a time", "trivial calls, 64 in flight"]
    assert {"16 MiB bytes echo", "16 MiB bytearray echo", "16 MiB memoryview echo"} <= set(cases)
    for row in process["rows"]:
        values = row["values"]
        assert all(values[key] > 0 for key in ("stdlib", "pebble", "ours")), row
        assert values["vs_stdlib"] == pytest.approx(values["ours"] / values["stdlib"])
    assert [row["name"] for row in threads["rows"]] == [
        "thread: one at a time",
        "thread: 64 in flight",
    ]
    assert "| trivial call, one at a time |" in done.stdout
