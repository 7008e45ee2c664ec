"""Task functions and cluster helpers for tests/test_dask_pool.py (plain module, not a conftest).

Task functions live here, at module level, because dask workers receive them pickled.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

SCENARIO_TIMEOUT = 40.0


def square(x: int) -> int:
    return x * x


def whoami() -> int:
    return os.getpid()


def touch(path: str) -> str:
    Path(path).write_text("ran")
    return path


def fresh_token(_seed: int) -> str:
    """Same argument, new answer each run: shows calls are not deduplicated by argument."""
    return os.urandom(8).hex()


def echo_kwargs(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


class Held:
    """Files through which a test holds a `hold` task on a dask worker and then releases it."""

    def __init__(self, folder: Path) -> None:
        self.started = folder / "hold.started"
        self.release = folder / "hold.release"
        self.finished = folder / "hold.finished"

    def args(self) -> tuple[str, str, str]:
        return (str(self.started), str(self.release), str(self.finished))


def hold(started: str, release: str, finished: str) -> str:
    """Mark `started`, run until `release` exists (at most 30 s), then mark `finished`."""
    Path(started).write_text(str(os.getpid()))
    deadline = time.monotonic() + 30
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    Path(finished).write_text("done")
    return "released"


def _check_input(value: int) -> None:
    raise ValueError(f"value {value} is not allowed")


def fails_deep(value: int) -> int:
    _check_input(value)
    return value


def dies_first_time(marker: str) -> tuple[str, int]:
    """First run: record this worker's pid in `marker` and hang (the test kills it). A rerun
    elsewhere finds the marker and answers at once."""
    path = Path(marker)
    if path.exists() and path.read_text():
        return ("rerun", os.getpid())
    path.write_text(str(os.getpid()))
    time.sleep(60)
    return ("first", os.getpid())


def run_bounded(coro: Coroutine[Any, Any, T], timeout: float = SCENARIO_TIMEOUT) -> T:
    """Run `coro` on a fresh event loop, failing the test instead of hanging past `timeout`."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_file(path: Path, timeout: float) -> str:
    """Return `path`'s text once it is non-empty; raise AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if text:
                return text
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written within {timeout} s")


@contextmanager
def scheduler_process(
    tmp_path: Path, env: dict[str, str] | None = None, options: tuple[str, ...] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `dask scheduler` on a loopback ephemeral port, with no workers (and `env`, if
    given, as its environment; `options` added to its command line); killed on exit."""
    info = tmp_path / "scheduler.json"
    dask_cli = Path(sys.executable).with_name("dask")
    proc = subprocess.Popen(
        [
            *(str(dask_cli), "scheduler", "--host", "127.0.0.1", "--port", "0"),
            *("--no-dashboard", "--scheduler-file", str(info), *options),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        address = json.loads(wait_for_file(info, 30))["address"]
        yield address, proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def stray_children(before: set[int]) -> list[str]:
    """Children of this process that were not there in `before`, except multiprocessing's
    resource tracker (it lives as long as the interpreter)."""
    stray = []
    for child in psutil.Process().children(recursive=True):
        if child.pid in before:
            continue
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "resource_tracker" not in cmdline:
            stray.append(f"{child.pid}: {cmdline}")
    return stray


def wait_no_stray_children(before: set[int], timeout: float = 15) -> list[str]:
    deadline = time.monotonic() + timeout
    stray = stray_children(before)
    while stray and time.monotonic() < deadline:
        time.sleep(0.1)
        stray = stray_children(before)
    return stray


REGISTRY_SCRIPT = """
import asyncio, json, operator, sys
from tornado_run.decorators import pools

pools.configure("in_code", kind="dask", address=sys.argv[1], timeout=20)

async def main():
    answers = {}
    for name in ("in_code", "from_table"):
        answers[name] = await pools.get(name).run(operator.mul, (6, 7), {}, timeout=None)
    answers["kinds"] = {name: pools.stats()[name]["kind"] for name in answers}
    await pools.aclose(5)
    return answers

print(json.dumps(asyncio.run(asyncio.wait_for(main(), 30))))
"""


def make_tls_files(folder: Path) -> dict[str, Path]:
    """A throwaway CA and one certificate it signed (for scheduler, worker and client alike:
    dask checks the CA, not host names), made with the openssl command."""
    files = {name: folder / name for name in ("ca.pem", "ca.key", "node.pem", "node.key")}
    csr = folder / "node.csr"
    ca, ca_key = str(files["ca.pem"]), str(files["ca.key"])
    cert, key = str(files["node.pem"]), str(files["node.key"])
    new_key = ("req", "-newkey", "rsa:2048", "-nodes")
    steps = [
        [*new_key, "-x509", "-days", "1", "-subj", "/CN=test-ca", "-keyout", ca_key, "-out", ca],
        [*new_key, "-subj", "/CN=node", "-keyout", key, "-out", str(csr)],
        ["x509", "-req", "-in", str(csr), "-CA", ca, "-CAkey", ca_key, "-out", cert],
    ]
    for step in steps:
        subprocess.run(["openssl", *step], capture_output=True, check=True, timeout=30)
    return files
