"""@unblock(pool="process"): pickling, crash isolation, timeouts that kill, clear errors."""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
import tornado.web
from decorators_support import (
    assert_no_workers_left,
    fetch,
    free_port,
    process_alive,
    read_pid,
    run,
    serving,
    spin,
    wait_until,
)
from tornado_run.decorators import TaskTimeout, WorkerCrashed, pools, unblock

# One shared pool for the module: starting worker processes is the slow part.
pools.configure("tproc", kind="process", size=2, max_pending=64)
STDLIB_POOL = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"))


@unblock(pool=STDLIB_POOL)
def square_in_stdlib_pool(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@unblock(pool="tproc")
def cube(x: int) -> tuple[int, int]:
    return x**3, os.getpid()


@unblock(pool="tproc")
def crash(code: int) -> None:
    os._exit(code)


@unblock(pool="tproc")
def nap(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


@unblock(pool="tproc")
def die_by(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(5)


@unblock(pool="tproc")
def segfault() -> None:
    ctypes.string_at(0)  # a crash in C code


@unblock(pool="tproc", timeout=0.5)
def hang(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)


@unblock(pool="tproc")
def burn(milliseconds: float) -> int:
    return spin(milliseconds)


@unblock(pool="tproc")
def echo(value: Any) -> Any:
    return value


@unblock(pool="tproc")
def make_unpicklable() -> Any:
    return threading.Lock()


@pytest.fixture(scope="module", autouse=True)
def shared_pool() -> Iterator[None]:
    yield
    pools.shutdown(wait=True)
    STDLIB_POOL.shutdown()
    assert_no_workers_left()


def test_module_level_function_runs_in_a_child_process() -> None:
    value, pid = run(lambda: cube(3))
    assert value == 27
    assert pid != os.getpid()
    assert psutil.Process(pid).ppid() != 0


def test_a_stdlib_process_pool_executor_runs_a_decorated_function() -> None:
    value, pid = run(lambda: square_in_stdlib_pool(7))
    assert value == 49
    assert pid != os.getpid()


def test_one_crashing_task_fails_only_its_own_call() -> None:
    async def main() -> tuple[list[Any], int]:
        calls = [crash(7) if i == 5 else nap(0.05, i) for i in range(20)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        after, _pid = await cube(2)
        return results, after

    results, after = run(main)
    crashed = [r for r in results if isinstance(r, BaseException)]
    assert len(crashed) == 1 and isinstance(crashed[0], WorkerCrashed)
    assert crashed[0].status_code == 500 and "exit code 7" in str(crashed[0])
    assert sorted(r for r in results if isinstance(r, int)) == [i for i in range(20) if i != 5]
    assert after == 8
    assert pools.stats()["tproc"]["crashed"] >= 1


def test_a_task_killed_by_a_signal_names_the_signal() -> None:
    with pytest.raises(WorkerCrashed, match="signal SIGKILL"):
        run(lambda: die_by(signal.SIGKILL))
    with pytest.raises(WorkerCrashed, match="signal SIGSEGV"):
        run(segfault)
    assert run(lambda: cube(1))[0] == 1


def test_the_pool_recovers_when_its_idle_workers_are_killed() -> None:
    async def main() -> tuple[int, int]:
        first = {pid for _value, pid in await asyncio.gather(*(cube(i) for i in range(6)))}
        for pid in first:  # as an OOM killer might: no task is running
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)  # the deaths are seen and replacements started meanwhile
        value, pid = await cube(4)
        return value, pid

    value, pid = run(main)
    assert value == 64
    assert psutil.pid_exists(pid)


def test_hung_task_times_out_its_process_is_killed_and_capacity_returns(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    begin = time.monotonic()
    with pytest.raises(TaskTimeout) as caught:
        run(lambda: hang(str(pid_file)))
    elapsed = time.monotonic() - begin
    assert caught.value.status_code == 504
    assert 0.5 <= elapsed < 3.0  # generous slack for a shared machine
    hung_pid = run(lambda: read_pid(pid_file))
    deadline = time.monotonic() + 10
    while process_alive(hung_pid):
        assert time.monotonic() < deadline, "the hung task's process was not killed"
        time.sleep(0.05)

    async def both_workers() -> set[int]:
        results = await asyncio.gather(*(cube(i) for i in range(2)), nap(0.3, 0), nap(0.3, 0))
        return {pid for _value, pid in results[:2]}

    assert hung_pid not in run(both_workers)
    assert pools.stats()["tproc"]["size"] == 2


def test_fast_request_completes_while_a_cpu_bound_process_task_runs() -> None:
    finished: list[str] = []

    class Slow(tornado.web.RequestHandler):
        async def get(self) -> None:
            self.write({"loops": await burn(1500)})

    class Fast(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write("fast")

    async def main() -> None:
        app = tornado.web.Application([("/slow", Slow), ("/fast", Fast)])
        async with serving(app) as port:

            async def call(path: str) -> None:
                assert (await fetch(port, path)).code == 200
                finished.append(path)

            slow = asyncio.ensure_future(call("/slow"))
            await wait_until(lambda: pools.stats()["tproc"]["busy"] >= 1)
            await call("/fast")
            await slow

    run(main)
    assert finished == ["/fast", "/slow"]


def test_a_handler_verb_on_a_process_pool_is_a_type_error_at_decoration() -> None:
    with pytest.raises(TypeError, match="move the work to a module-level"):

        class Handler(tornado.web.RequestHandler):
            @unblock(pool="tproc")
            def get(self) -> None: ...


def test_lambda_or_nested_function_is_a_type_error_at_call_time() -> None:
    @unblock(pool="tproc")
    def nested() -> int:
        return 1

    with pytest.raises(TypeError, match="define it at module level"):
        run(nested)


def test_unpicklable_argument_or_result_is_a_type_error_and_the_pool_stays_healthy() -> None:
    with pytest.raises(TypeError, match=r"arguments of .*echo\(\) cannot be sent.*lock"):
        run(lambda: echo(threading.Lock()))
    with pytest.raises(TypeError, match=r"result of .*make_unpicklable\(\) cannot be sent back"):
        run(make_unpicklable)
    assert run(lambda: echo({"ok": [1, 2]})) == {"ok": [1, 2]}


UNGUARDED = """
import asyncio, os, socket
from tornado_run.decorators import unblock

@unblock(pool="process")
def work():
    return 1

# Starts "serving" at import with no `if __name__ == "__main__":` guard, so the pool's
# process server runs this again and fails to bind the port the parent holds.
listener = socket.socket()
listener.bind(("127.0.0.1", int(os.environ["TEST_PORT"])))
listener.listen()

async def main():
    try:
        print("RESULT", await work(), flush=True)
    except Exception as error:
        print("ERROR:", type(error).__name__, error, flush=True)

asyncio.run(main())
"""


@pytest.mark.timeout(90)
def test_a_script_without_main_guard_gets_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(UNGUARDED))
    env = {**os.environ, "TEST_PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=80,
        cwd=tmp_path,
        env=env,
    )
    assert 'if __name__ == "__main__":' in done.stdout, done.stdout + done.stderr
    assert "WorkerCrashed" in done.stdout
