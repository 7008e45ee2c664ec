"""The `dask` pool kind against a real dask.distributed LocalCluster (2 worker processes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web

distributed = pytest.importorskip("distributed")

import dask_support as ds  # noqa: E402
from tornado_run.decorators import Overloaded, TaskTimeout, pools, unblock  # noqa: E402
from tornado_run.decorators.pools import dask as dask_pool  # noqa: E402
from tornado_run.decorators.pools.api import PoolSpec  # noqa: E402
from tornado_run.decorators.pools.dask import DaskPool  # noqa: E402

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A real LocalCluster: scheduler in this process, 2 single-threaded worker processes."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    local = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    try:
        yield local
    finally:
        local.close(timeout=20)
        assert ds.wait_no_stray_children(before) == []


def make_pool(address: str, **spec: Any) -> DaskPool:
    options = {"address": address, **spec.pop("options", {})}
    return dask_pool.create_pool(PoolSpec(name="cluster", kind="dask", options=options, **spec))


def test_results_come_back_from_cluster_worker_processes(cluster: Any) -> None:
    async def scenario() -> tuple[list[int], set[int]]:
        pool = make_pool(cluster.scheduler_address)
        try:
            squares = await asyncio.gather(
                *(pool.run(ds.square, (n,), {}, timeout=20) for n in range(6))
            )
            pids = await asyncio.gather(
                *(pool.run(ds.whoami, (), {}, timeout=20) for _ in range(4))
            )
            return list(squares), set(pids)
        finally:
            await pool.aclose(5)

    squares, pids = ds.run_bounded(scenario())
    assert squares == [0, 1, 4, 9, 16, 25]
    assert os.getpid() not in pids
    assert pids <= {p.pid for p in psutil.Process().children(recursive=True)}


def test_identical_calls_are_not_deduplicated(cluster: Any) -> None:
    async def scenario() -> list[str]:
        pool = make_pool(cluster.scheduler_address)
        try:
            # At the same time, so that merged calls would share one dask task and result.
            calls = [pool.run(ds.fresh_token, (1,), {}, timeout=20) for _ in range(3)]
            return list(await asyncio.gather(*calls))
        finally:
            await pool.aclose(5)

    tokens = ds.run_bounded(scenario())
    assert len(set(tokens)) == 3


def test_keyword_arguments_named_like_dask_options_reach_the_function(cluster: Any) -> None:
    kwargs = {"key": "k", "pure": True, "workers": ["w"], "retries": 9, "priority": 3}

    async def scenario() -> dict[str, Any]:
        pool = make_pool(cluster.scheduler_address)
        try:
            echoed: dict[str, Any] = await pool.run(ds.echo_kwargs, (), dict(kwargs), timeout=20)
            return echoed
        finally:
            await pool.aclose(5)

    assert ds.run_bounded(scenario()) == kwargs


def test_task_error_is_reraised_with_its_remote_traceback(cluster: Any) -> None:
    async def scenario() -> BaseException:
        pool = make_pool(cluster.scheduler_address)
        try:
            await pool.run(ds.fails_deep, (13,), {}, timeout=20)
        except ValueError as exc:
            return exc
        finally:
            await pool.aclose(5)
        raise AssertionError("the task's ValueError was not raised")

    error = ds.run_bounded(scenario())
    assert str(error) == "value 13 is not allowed"
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert frames[-2:] == ["fails_deep", "_check_input"]


Work = Callable[[], Awaitable[Any]]


class _Await(tornado.web.RequestHandler):
    def initialize(self, work: Work) -> None:
        self.work = work

    async def get(self) -> None:
        self.write({"result": await self.work()})


async def _hold_then_quick(
    hold: Work, quick: Work, held: ds.Held, *, release_first: bool
) -> tuple[int, int]:
    """Serve `/hold` and `/quick` on an ephemeral loopback port. Fetch `/hold`, wait until its
    task runs on the cluster, fetch `/quick`, then collect `/hold`'s answer: after releasing
    the held task if `release_first`, else while it still runs. Returns both status codes."""
    app = tornado.web.Application(
        [(r"/hold", _Await, {"work": hold}), (r"/quick", _Await, {"work": quick})]
    )
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets([sock])
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    http = tornado.httpclient.AsyncHTTPClient()
    try:
        held_call = http.fetch(f"{base}/hold", raise_error=False, request_timeout=30)
        await asyncio.to_thread(ds.wait_for_file, held.started, 20)
        quick_answer = await http.fetch(f"{base}/quick", raise_error=False, request_timeout=30)
        if release_first:
            held.release.touch()
        held_answer = await held_call
        if not release_first:
            assert not held.finished.exists(), "the held task ended before its answer came"
        return held_answer.code, quick_answer.code
    finally:
        held.release.touch()
        await asyncio.to_thread(ds.wait_for_file, held.finished, 20)
        server.stop()
        http.close()


def test_unblock_timeout_on_dask_pool_answers_504_while_the_task_runs(
    cluster: Any, tmp_path: Path
) -> None:
    held = ds.Held(tmp_path)
    pools.configure("dask_timeout_test", kind="dask", address=cluster.scheduler_address)
    hold = unblock(pool="dask_timeout_test", timeout=0.5)(ds.hold)
    square = unblock(pool="dask_timeout_test", timeout=20)(ds.square)

    async def scenario() -> tuple[tuple[int, int], dict[str, Any]]:
        pool = pools.get("dask_timeout_test")
        try:
            codes = await _hold_then_quick(
                lambda: hold(*held.args()), lambda: square(3), held, release_first=False
            )
            return codes, dict(pool.stats())
        finally:
            await pool.aclose(5)

    codes, stats = ds.run_bounded(scenario())
    assert codes == (504, 200)
    assert stats["kind"] == "dask"
    assert stats["timed_out"] == 1 and stats["completed"] == 1 and stats["abandoned"] == 1
    assert stats["busy"] == 0 and stats["queued"] == 0


def test_timed_out_call_still_queued_on_the_cluster_never_runs(
    cluster: Any, tmp_path: Path
) -> None:
    holders = [ds.Held(tmp_path / name) for name in ("a", "b")]
    ran = tmp_path / "queued-call-ran"

    async def scenario() -> BaseException | None:
        pool = make_pool(cluster.scheduler_address)
        holding = []
        try:
            for held in holders:  # occupy both dask workers
                held.started.parent.mkdir()
                holding.append(
                    asyncio.ensure_future(pool.run(ds.hold, held.args(), {}, timeout=30))
                )
            for held in holders:
                await asyncio.to_thread(ds.wait_for_file, held.started, 20)
            try:
                await pool.run(ds.touch, (str(ran),), {}, timeout=0.5)
            except TaskTimeout as exc:
                return exc
            return None
        finally:
            # The scheduler has dropped the task when TaskTimeout is raised; its workers hear
            # of it a few milliseconds later (dask batches its messages).
            await asyncio.sleep(0.2)
            for held in holders:
                held.release.touch()
            assert await asyncio.gather(*holding) == ["released", "released"]
            await pool.aclose(5)

    assert isinstance(ds.run_bounded(scenario()), TaskTimeout)
    # Both workers are free again: a queued task that was not cancelled would run now.
    time.sleep(1.5)
    assert not ran.exists()


def test_calls_past_max_pending_are_shed_with_503(cluster: Any, tmp_path: Path) -> None:
    held = ds.Held(tmp_path)

    async def scenario() -> tuple[tuple[int, int], dict[str, Any], Overloaded]:
        pool = make_pool(cluster.scheduler_address, max_pending=1)
        try:
            codes = await _hold_then_quick(
                lambda: pool.run(ds.hold, held.args(), {}, timeout=20),
                lambda: pool.run(ds.square, (3,), {}, timeout=20),
                held,
                release_first=True,
            )
            blocker = asyncio.ensure_future(pool.run(ds.nap, (0.5,), {}, timeout=20))
            await asyncio.sleep(0)  # let the blocker be admitted
            try:
                await pool.run(ds.square, (3,), {}, timeout=20)
            except Overloaded as exc:
                shed = exc
            else:
                raise AssertionError("second call was admitted past max_pending=1")
            await blocker
            return codes, dict(pool.stats()), shed
        finally:
            await pool.aclose(5)

    codes, stats, shed = ds.run_bounded(scenario())
    assert codes == (200, 503)
    assert stats["shed"] == 2 and stats["completed"] == 2
    assert shed.retry_after >= 1


def test_worker_killed_mid_task_is_retried_elsewhere(cluster: Any, tmp_path: Path) -> None:
    marker = tmp_path / "first-worker.pid"

    async def scenario() -> tuple[tuple[str, int], int]:
        pool = make_pool(cluster.scheduler_address)
        try:
            call = asyncio.ensure_future(
                pool.run(ds.dies_first_time, (str(marker),), {}, timeout=40)
            )
            text = await asyncio.to_thread(ds.wait_for_file, marker, 20)
            victim = int(text)
            os.kill(victim, signal.SIGKILL)
            return await call, victim
        finally:
            await pool.aclose(5)

    (attempt, pid), victim = ds.run_bounded(scenario())
    assert attempt == "rerun"
    assert pid != victim
    # LocalCluster's nanny replaces the killed worker; wait so later tests see 2 workers.
    cluster.wait_for_workers(2, timeout=30)


def test_closed_pool_refuses_calls_and_releases_its_client(cluster: Any) -> None:
    async def scenario() -> tuple[int, str]:
        pool = make_pool(cluster.scheduler_address)
        first = await pool.run(ds.square, (4,), {}, timeout=20)
        client = pool._client
        await pool.aclose(5)
        try:
            await pool.run(ds.square, (4,), {}, timeout=20)
        except RuntimeError as exc:
            assert "shut down" in str(exc)
            return first, client.status if client is not None else "none"
        raise AssertionError("closed pool ran a call")

    first, status = ds.run_bounded(scenario())
    assert first == 16
    assert status == "closed"


def test_size_caps_calls_in_flight_on_the_cluster(cluster: Any) -> None:
    async def scenario() -> tuple[dict[str, Any], list[float]]:
        pool = make_pool(cluster.scheduler_address, size=1)
        try:
            calls = [asyncio.ensure_future(pool.run(ds.nap, (0.5,), {}, timeout=20)) for _ in "ab"]
            await asyncio.sleep(0.25)
            during = dict(pool.stats())
            return during, list(await asyncio.gather(*calls))
        finally:
            await pool.aclose(5)

    during, results = ds.run_bounded(scenario())
    assert results == [0.5, 0.5]
    assert (during["size"], during["busy"], during["queued"]) == (1, 1, 1)


def test_graceful_close_cancels_calls_still_running_at_its_deadline(cluster: Any) -> None:
    async def scenario() -> tuple[BaseException | float, dict[str, Any]]:
        pool = make_pool(cluster.scheduler_address)
        call = asyncio.ensure_future(pool.run(ds.nap, (2,), {}, timeout=None))
        await asyncio.sleep(0.3)
        await pool.aclose(0.3)
        outcome = await asyncio.gather(call, return_exceptions=True)
        return outcome[0], dict(pool.stats())

    outcome, stats = ds.run_bounded(scenario(), timeout=20)
    assert isinstance(outcome, RuntimeError)
    assert "cancelled (tornado-run: pool closed)" in str(outcome)
    assert stats["failed"] == 1 and stats["busy"] == 0


def test_close_from_another_thread_closes_the_client_on_its_own_loop(cluster: Any) -> None:
    """What `pools.shutdown()` and redeclaring a pool do: a blocking close from outside."""
    pool = make_pool(cluster.scheduler_address)
    used = threading.Event()
    release = threading.Event()
    seen: dict[str, Any] = {}

    async def serve() -> None:
        seen["result"] = await pool.run(ds.square, (5,), {}, timeout=20)
        seen["client"] = pool._client
        used.set()
        while not release.is_set():
            await asyncio.sleep(0.02)

    loop_thread = threading.Thread(target=ds.run_bounded, args=(serve(),))
    loop_thread.start()
    try:
        assert used.wait(30)
        pool.close(wait=True, timeout=10)
        assert seen["client"].status == "closed"
    finally:
        release.set()
        loop_thread.join(30)
    assert seen["result"] == 25
    with pytest.raises(RuntimeError, match="shut down"):
        ds.run_bounded(pool.run(ds.square, (5,), {}, timeout=20))


def test_close_after_the_loop_ended_returns_at_once(cluster: Any) -> None:
    pool = make_pool(cluster.scheduler_address)
    assert ds.run_bounded(pool.run(ds.square, (6,), {}, timeout=20)) == 36
    started = time.monotonic()
    pool.close(wait=True, timeout=10)
    assert time.monotonic() - started < 5
    assert pool._client is None


def test_pools_declared_in_code_and_in_config_table_run_on_the_cluster(cluster: Any) -> None:
    table = {"from_table": {"kind": "dask", "address": cluster.scheduler_address}}
    env = {**os.environ, "TORNADO_RUN_POOLS_CONFIG": json.dumps(table)}
    out = subprocess.run(
        [sys.executable, "-c", ds.REGISTRY_SCRIPT, cluster.scheduler_address],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    answers = json.loads(out.stdout.strip().splitlines()[-1])
    assert answers == {
        "in_code": 42,
        "from_table": 42,
        "kinds": {"in_code": "dask", "from_table": "dask"},
    }
