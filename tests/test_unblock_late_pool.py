"""`@unblock(pool=NAME)` where NAME is declared after decoration, or never in this process:
a module imports anywhere (a dask scheduler or worker, a script, a test), the pool is found at
the first call, and an undeclared name fails that call naming the declared pools."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tornado.web
from runner_support import APPS, clean_env
from tornado_run.decorators import pools, unblock


def test_a_module_imports_where_its_pool_is_not_declared() -> None:
    code = (
        "import asyncio, remote_app\n"
        "try:\n"
        "    asyncio.run(remote_app.work(1))\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env({"PYTHONPATH": str(APPS)}),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pool 'remote' is not declared (declared pools: process, thread)")


def test_what_a_dask_pool_ships_is_the_plain_function_without_tornado_run() -> None:
    pytest.importorskip("distributed")
    code = (
        "import pickle, sys, remote_app\n"
        "from distributed.protocol import pickle as dask_pickle\n"
        "shipped = dask_pickle.dumps(remote_app.work.__wrapped__)\n"
        "sys.stdout.write(repr((b'tornado_run' in shipped, b'remote_app' in shipped)))\n"
        "del sys.modules['remote_app']\n"  # a fresh importer, as on a dask host
        "fn = pickle.loads(shipped)\n"
        "sys.stdout.write(' ' + repr(hasattr(fn, '__wrapped__')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env({"PYTHONPATH": str(APPS)}),
    )
    assert out.returncode == 0, out.stderr
    # By value, naming its module (whose helpers it imports there) but nothing of tornado-run.
    assert out.stdout == "(False, True) False"


def test_a_pool_declared_after_decoration_runs_the_calls() -> None:
    @unblock(pool="late_threads")
    def double(x: int) -> int:
        return 2 * x

    pools.configure("late_threads", kind="thread", size=1)
    assert asyncio.run(double(21)) == 42
    assert pools.stats()["late_threads"]["completed"] == 1


def test_a_handler_verb_on_a_pool_declared_later_as_process_fails_at_the_first_call() -> None:
    class Handler(tornado.web.RequestHandler):
        @unblock(pool="late_processes")
        def get(self) -> None: ...

    pools.configure("late_processes", kind="process", size=1)
    with pytest.raises(TypeError, match="move the work to a module-level"):
        asyncio.run(Handler.get(object()))  # type: ignore[arg-type]


def test_a_generator_that_is_not_a_handler_verb_still_fails_at_decoration() -> None:
    with pytest.raises(TypeError, match="generators stream only as handler verbs"):

        @unblock(pool="never_declared")
        def chunks() -> object:
            yield b"x"


WORKER_OPTIONS = ("--nthreads", "1", "--no-nanny", "--no-dashboard")
REMOTE_CALL = """
import asyncio, json, sys
from tornado_run.decorators import pools
pools.configure("remote", kind="dask", address=sys.argv[1], connect_timeout=10)
import remote_app

async def main():
    answer = await remote_app.work(1)
    await pools.aclose(5)
    return answer

print(json.dumps(asyncio.run(asyncio.wait_for(main(), 40))))
"""


@pytest.mark.timeout(90)
def test_a_separate_scheduler_and_worker_run_a_module_whose_pool_they_do_not_declare(
    tmp_path: Path,
) -> None:
    pytest.importorskip("distributed")
    import dask_support as ds

    env = clean_env({"PYTHONPATH": str(APPS)})
    dask = Path(sys.executable).with_name("dask")
    with ds.scheduler_process(tmp_path, env=env) as (address, _):
        worker = subprocess.Popen(
            [str(dask), "worker", address, "--host", "127.0.0.1", *WORKER_OPTIONS],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            out = subprocess.run(
                [sys.executable, "-c", REMOTE_CALL, address],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["slept_ms"] == 1 and answer["worker"].startswith("tcp://")
