"""The CPU tier under `tornado-run --workers 2`: one host-wide set of pool processes that any
web worker's call may use, host-wide backpressure, and status and metrics that show it once.
Real servers, real pool processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from runner_support import Server, free_port, run_cli
from tier_support import TIER_APPS, Background, get_json, metrics_text, pool_pids, status, until


@pytest.fixture
def server(launch: Callable[..., Server], tmp_path: Path) -> Server:
    return launch(
        "tier_app:application",
        "--workers",
        "2",
        "--control",
        str(tmp_path / "ctl"),
        "--metrics",
        f"127.0.0.1:{free_port()}",
        app_dir=TIER_APPS,
    )


@pytest.mark.timeout(60)
def test_two_cpu_calls_of_one_request_run_at_once_on_two_pool_processes(server: Server) -> None:
    get_json(server, "/burn?ms=1")  # the pool is up
    for _ in range(3):  # a busy shared machine may delay one start; one clean overlap is proof
        code, body = get_json(server, "/pair?ms=300")
        assert code == 200, body
        first, second = body["calls"]
        assert first["pid"] != second["pid"]  # each call had a process of its own
        assert second["pid"] != body["worker"] and first["pid"] != body["worker"]
        if first["start"] < second["end"] and second["start"] < first["end"]:
            return
    pytest.fail(f"the two calls never overlapped in time: {body}")


@pytest.mark.timeout(60)
def test_calls_from_every_worker_share_one_pool(server: Server) -> None:
    workers: dict[int, set[int]] = {}
    for _ in range(40):
        code, body = get_json(server, "/burn?ms=1")
        assert code == 200
        workers.setdefault(body["worker"], set()).add(body["pid"])
        if len(workers) == 2:
            break
    assert len(workers) == 2, "the listening socket never reached the second worker"
    every_pool_pid = set().union(*workers.values())
    assert every_pool_pid <= pool_pids(server) | every_pool_pid  # none outside the tier
    assert pool_pids(server) and every_pool_pid <= pool_pids(server)
    for worker in server.workers():  # no web worker has pool processes of its own
        assert worker.children() == []


@pytest.mark.timeout(60)
def test_backpressure_is_host_wide(server: Server) -> None:
    # pool "narrow": size 1 + max_pending 1 for the whole host, whatever the worker
    requests = Background(server)
    for _ in range(5):
        requests.start("/nap?pool=narrow&s=1.5")
    results = requests.join(30)
    codes = sorted(code for code, _ in results.values())
    assert codes == [200, 200, 503, 503, 503], results


@pytest.mark.timeout(60)
def test_overloaded_answer_carries_retry_after(server: Server) -> None:
    requests = one_running_one_queued(server, 4)
    reply = server.get("/nap?pool=narrow&s=0")
    assert reply.status == 503
    assert int(reply.headers["Retry-After"]) >= 1
    requests.join()


def one_running_one_queued(server: Server, seconds: float) -> Background:
    """A `seconds` nap holding the narrow pool's one process, and a short call queued behind it."""
    requests = Background(server)
    requests.start(f"/nap?pool=narrow&s={seconds:g}")
    until(lambda: (status_pool(server) or {}).get("busy") == 1, "a call to run")
    requests.start("/nap?pool=narrow&s=0")
    until(lambda: (status_pool(server) or {}).get("queued") == 1, "a call to queue")
    return requests


def status_pool(server: Server, name: str = "narrow") -> dict[str, int] | None:
    control = next(Path(server.log_path).parent.glob("ctl"), None)
    assert control is not None
    pools: dict[str, dict[str, int]] = status(control).get("tier", {}).get("pools", {})
    return pools.get(name)


@pytest.mark.timeout(60)
def test_status_and_metrics_show_the_tier_once_with_busy_and_queued(
    server: Server, tmp_path: Path
) -> None:
    requests = one_running_one_queued(server, 6)
    snapshot = status(tmp_path / "ctl")
    assert snapshot["tier"]["pid"] == server.tier()[0].pid
    assert snapshot["tier"]["pools"]["narrow"]["busy"] == 1
    for worker in snapshot["workers"]:  # the process pools are not shown per worker
        assert "narrow" not in worker["pools"] and "process" not in worker["pools"]
    table = run_cli("status", "--control", str(tmp_path / "ctl")).stdout
    assert table.count("cpu tier pid") == 1 and "narrow 1/1 of 1" in table
    port = int(server.log().split("metrics on http://127.0.0.1:")[1].split("/")[0])
    families = {f.name: f for f in text_string_to_metric_families(metrics_text(port))}
    busy = [(s.labels, s.value) for s in families["tornado_run_cpu_tier_pool_busy"].samples]
    assert ({"pool": "narrow"}, 1.0) in busy
    assert len([labels for labels, _ in busy if labels["pool"] == "narrow"]) == 1
    queued = families["tornado_run_cpu_tier_pool_queued"].samples
    assert [s.value for s in queued if s.labels["pool"] == "narrow"] == [1.0]
    requests.join()


@pytest.mark.timeout(60)
def test_the_thread_pool_stays_in_each_worker(server: Server) -> None:
    for _ in range(4):
        code, body = get_json(server, "/thread")
        assert code == 200 and body["thread_pid"] == body["worker"]


@pytest.mark.timeout(60)
def test_large_buffers_cross_the_tier_both_ways_unchanged(server: Server) -> None:
    code, body = get_json(server, "/echo?kib=16384")  # 16 MiB: out of band, through a memfd
    assert code == 200 and body == {"bytes": True, "bytearray": True, "memoryview": True}
    code, body = get_json(server, "/echo?kib=1")  # small: in the frame itself
    assert code == 200 and all(body.values()), body
