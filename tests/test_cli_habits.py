"""What users of gunicorn and uvicorn expect of the command line, against real tornado-run
processes: defaults in --help, -w and -b, process titles (read with psutil), --version, and
access log lines in gunicorn's atoms or JSON on both HTTP servers."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from importlib import metadata

import psutil
import pytest
from runner_support import Server, http_get, run_cli, wait_until
from tornado_run.runner.settings.options import OPTIONS
from tornado_run.runner.settings.reference import default_text

pytestmark = pytest.mark.timeout(60)


def _help_entries(text: str) -> dict[str, str]:
    """Each option's help paragraph in `--help`, keyed by its long flag, whitespace joined."""
    entries: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        match = re.match(r"  (?:-\w(?: [^,]*)?, )?(--[\w-]+)", line)
        if match:
            current = match.group(1)
            entries[current] = line
        elif current and line.startswith("      "):
            entries[current] += " " + line.strip()
        else:
            current = ""
    return {flag: " ".join(entry.split()) for flag, entry in entries.items()}


def test_help_shows_every_options_default() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    entries = _help_entries(result.stdout)
    for option in OPTIONS:
        entry = entries[option.flag]
        assert "(default" in entry, entry
        if "(default:" not in option.help:
            assert f"(default: {default_text(option)})" in entry, entry


def test_w_and_b_are_workers_and_bind(launch: Callable[..., Server]) -> None:
    server = launch("hello:application", "-w", "2", "-b", "127.0.0.1:0", bind=None)
    match = re.search(r"Listening at http://127\.0\.0\.1:(\d+)", server.log())
    assert match is not None, server.log()
    assert len(server.worker_pids()) == 2
    assert http_get(int(match.group(1)), "/pid").status == 200
    assert server.stop() == 0


def test_master_and_workers_have_process_titles(launch: Callable[..., Server]) -> None:
    server = launch("hello:application", "--workers", "2")
    master = psutil.Process(server.pid)
    assert master.cmdline()[0] == "tornado-run: master [hello:application]"
    assert master.name() == "tornado-run: master [hello:application]"
    titles = sorted(worker.cmdline()[0] for worker in server.workers())
    assert titles == ["tornado-run: worker 0", "tornado-run: worker 1"]
    assert sorted(worker.name() for worker in server.workers()) == titles
    assert server.stop() == 0


def test_version_lists_tornado_run_python_and_the_libraries() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("tornado-run ")
    assert re.fullmatch(r"Python 3\.\d+\.\d+.*", lines[1])
    for name in ("tornado", "httptools", "uvloop", "setproctitle"):
        assert f"{name} {metadata.version(name)}" in lines


HEADERS = {"User-Agent": "probe/1.0", "Referer": "http://example.test/from", "X-Trace": "t-42"}
FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" %(D)s %(M)s %(L)s %(T)s '
    "%(m)s %(U)s %(q)s %(H)s %(p)s %({X-Trace}i)s %({Content-Type}o)s"
)
LINE = re.compile(
    r"127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
    r'"GET /pid\?x=1 HTTP/1\.1" 200 (\d+) (\d+) "http://example\.test/from" "probe/1\.0" '
    r"(\d+) (\d+) (\d+\.\d{6}) (\d+) GET /pid x=1 HTTP/1\.1 <(\d+)> t-42 "
    r"application/json; charset=UTF-8$",
    re.MULTILINE,
)
HTTP_KINDS = pytest.mark.parametrize("http", ["fast", "tornado"])


@HTTP_KINDS
def test_access_log_format_writes_gunicorns_atoms(launch: Callable[..., Server], http: str) -> None:
    server = launch("hello:application", "--http", http, "--access-log-format", FORMAT)
    assert server.port is not None
    reply = http_get(server.port, "/pid?x=1", headers=HEADERS)
    match = re.search(LINE, server.wait_for_log(r"GET /pid\?x=1 HTTP/1\.1\" 200"))
    assert match is not None, server.log()
    size, size_b, micros, millis, seconds, whole, pid = match.groups()
    assert int(size) == int(size_b) == len(reply.body)
    assert int(micros) // 1000 == int(millis) and abs(float(seconds) * 1e6 - int(micros)) <= 1
    assert int(whole) == 0 and int(pid) == reply.json()["pid"]
    assert server.stop() == 0


@HTTP_KINDS
def test_access_log_json_is_one_object_per_line(launch: Callable[..., Server], http: str) -> None:
    server = launch("hello:application", "--http", http, "--access-log-json")
    assert server.port is not None
    reply = http_get(server.port, "/pid?x=1", headers=HEADERS)
    http_get(server.port, "/missing")
    log = server.wait_for_log(r'"path":"/missing"')
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    first, missing = records
    assert first["remote"] == "127.0.0.1" and first["method"] == "GET"
    assert (first["path"], first["query"], first["protocol"]) == ("/pid", "x=1", "HTTP/1.1")
    assert first["status"] == 200 and first["size"] == len(reply.body)
    assert first["referrer"] == HEADERS["Referer"] and first["user_agent"] == "probe/1.0"
    assert first["pid"] == reply.json()["pid"] and first["duration_ms"] >= 0
    assert time.strptime(first["time"], "%Y-%m-%dT%H:%M:%S%z")
    assert missing["status"] == 404
    assert server.stop() == 0


def test_access_log_keeps_tornados_line_without_a_format(launch: Callable[..., Server]) -> None:
    server = launch("hello:application", "--access-log")
    assert server.port is not None
    http_get(server.port, "/pid")
    log = server.wait_for_log(r"tornado\.access: 200 GET /pid")
    assert re.search(r"\[INFO\] tornado\.access: 200 GET /pid \(127\.0\.0\.1\) [\d.]+ms", log)
    assert server.stop() == 0


def test_access_log_off_writes_no_request_line(launch: Callable[..., Server]) -> None:
    server = launch("hello:application")
    assert server.port is not None
    http_get(server.port, "/pid")
    wait_until(lambda: server.stop() == 0, 30, "a clean stop")
    assert "GET /pid" not in server.log()
