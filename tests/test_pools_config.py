"""Declaring pools: configure() validation, [pools.NAME] tables from the runner, CPU budget,
custom kinds, stats, and backpressure (Overloaded -> 503 with Retry-After)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import pytest
import tornado.web
from decorators_support import fetch, run, serving, wait_until
from tornado_run.decorators import Overloaded, pools, unblock
from tornado_run.decorators.pools.api import PoolSpec, PoolStats
from tornado_run.runner.lifecycle import ConfigurationError, usable_cores

STAT_KEYS = {
    "kind",
    "size",
    "busy",
    "queued",
    "completed",
    "failed",
    "timed_out",
    "crashed",
    "abandoned",
    "shed",
}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "gpu"}, r"pools\.bad\.kind = 'gpu': unknown pool kind \(allowed: .*process"),
        ({"size": 0}, r"pools\.bad\.size = 0: expected an integer >= 1 or \"auto\""),
        ({"size": "many"}, r"pools\.bad\.size = 'many'"),
        ({"max_pending": -1}, r"pools\.bad\.max_pending = -1: expected an integer >= 0"),
        ({"timeout": -2}, r"pools\.bad\.timeout = -2: expected seconds > 0"),
        ({"timeout": "soon"}, r"pools\.bad\.timeout = 'soon'"),
        ({"colour": "red"}, r"pools\.bad\.colour = 'red': unknown setting for kind 'thread'"),
        ({"kind": "process", "cancel_running": "yes"}, r"cancel_running = 'yes': expected true"),
    ],
)
def test_bad_configure_values_fail_naming_key_value_and_allowed(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        pools.configure("bad", **kwargs)
    assert "bad" not in pools.names()


def test_configure_declares_a_pool_that_unblock_can_use() -> None:
    spec = pools.configure("declared", kind="thread", size=3, max_pending=5, timeout=2)
    assert spec == PoolSpec("declared", "thread", 3, 5, 2.0, {})

    @unblock(pool="declared")
    def name() -> str:
        return threading.current_thread().name

    assert run(name).startswith("tornado-run-declared")
    stats = pools.stats()["declared"]
    assert set(stats) == STAT_KEYS
    assert (stats["size"], stats["completed"]) == (3, 1)


def test_a_registered_kind_is_usable_by_name() -> None:
    class Inline:
        def __init__(self, spec: PoolSpec) -> None:
            self.spec = spec
            self.calls = 0

        async def run(
            self,
            fn: Callable[..., Any],
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
            *,
            timeout: float | None,
        ) -> Any:
            self.calls += 1
            return fn(*args, **kwargs)

        def stats(self) -> PoolStats:
            return PoolStats(
                kind="inline",
                size=1,
                busy=0,
                queued=0,
                completed=self.calls,
                failed=0,
                timed_out=0,
                crashed=0,
                abandoned=0,
                shed=0,
            )

        async def aclose(self, timeout: float) -> None: ...

    pools.register_kind("inline", Inline)
    pools.configure("here", kind="inline")

    @unblock(pool="here")
    def double(x: int) -> int:
        return 2 * x

    assert run(lambda: double(21)) == 42
    assert pools.stats()["here"]["completed"] == 1


RUNNER_CHILD = """
import json
from tornado_run.decorators import pools
from tornado_run.runner.lifecycle import ConfigurationError
try:
    out = {name: dict(pools.spec_of(name).__dict__) for name in pools.names()}
    out["process_size"] = pools.get("process").stats()["size"]
    print(json.dumps(out, default=str))
except ConfigurationError as error:
    print("ConfigurationError:", error)
"""


def run_as_worker(env: dict[str, str]) -> str:
    """Run a snippet in a fresh interpreter with the env the runner gives its workers."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RUNNER_CHILD)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_config_file_pool_tables_declare_pools_in_each_worker() -> None:
    table = {"db": {"kind": "thread", "size": 3, "timeout": 1.5}, "cpu": {"kind": "process"}}
    out = json.loads(run_as_worker({"TORNADO_RUN_POOLS_CONFIG": json.dumps(table)}))
    assert out["db"]["size"] == 3 and out["db"]["timeout"] == 1.5
    assert out["cpu"]["kind"] == "process" and out["cpu"]["size"] is None  # auto
    assert {"thread", "process"} <= set(out)


def test_invalid_pool_table_is_one_configuration_error_line() -> None:
    table = {"db": {"kind": "thread", "size": -3}}
    out = run_as_worker({"TORNADO_RUN_POOLS_CONFIG": json.dumps(table)})
    assert out == 'ConfigurationError: pools.db.size = -3: expected an integer >= 1 or "auto"'


def test_auto_process_pool_outside_the_tier_takes_every_usable_core() -> None:
    out = json.loads(run_as_worker({"TORNADO_RUN_WORKER_COUNT": "2"}))
    assert out["process_size"] == usable_cores()


def test_past_max_pending_calls_fail_at_once_with_503_and_retry_after() -> None:
    pools.configure("narrow", kind="thread", size=1, max_pending=1)
    release = threading.Event()

    class Busy(tornado.web.RequestHandler):
        @unblock(pool="narrow")
        def get(self) -> str:
            release.wait(20)
            return "done"

    async def main() -> tuple[list[Any], Any]:
        async with serving(tornado.web.Application([("/", Busy)])) as port:
            admitted = [asyncio.ensure_future(fetch(port, "/")) for _ in range(2)]
            await wait_until(lambda: pools.stats().get("narrow", {}).get("queued") == 1)
            shed = await fetch(port, "/")
            release.set()
            return await asyncio.gather(*admitted), shed

    admitted, shed = run(main)
    assert [r.code for r in admitted] == [200, 200]
    assert shed.code == 503
    assert int(shed.headers["Retry-After"]) >= 1
    assert pools.stats()["narrow"]["shed"] == 1


def test_overloaded_from_an_awaited_function_carries_retry_after() -> None:
    pools.configure("narrow_fn", kind="thread", size=1, max_pending=0)
    release = threading.Event()

    @unblock(pool="narrow_fn")
    def hold() -> None:
        release.wait(20)

    async def main() -> Overloaded:
        first = asyncio.ensure_future(hold())
        await wait_until(lambda: pools.stats().get("narrow_fn", {}).get("busy") == 1)
        try:
            await hold()
        except Overloaded as error:
            return error
        finally:
            release.set()
            await first
        raise AssertionError("the second call was admitted")

    error = run(main)
    assert error.status_code == 503 and error.retry_after >= 1


def test_redeclaring_a_used_pool_replaces_it() -> None:
    pools.configure("swap", kind="thread", size=1)

    @unblock(pool="swap")
    def double(x: int) -> int:
        return 2 * x

    assert run(lambda: double(1)) == 2
    assert pools.stats()["swap"]["completed"] == 1
    pools.configure("swap", kind="thread", size=2)
    assert "swap" not in pools.stats()  # the old pool is gone, the new one not built yet
    assert run(lambda: double(2)) == 4
    assert (pools.stats()["swap"]["size"], pools.stats()["swap"]["completed"]) == (2, 1)
