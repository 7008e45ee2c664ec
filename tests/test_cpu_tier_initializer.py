"""A process pool's initializer in the CPU tier: it runs once in each pool process (and again
in each replacement), and one that raises stops tornado-run with exit code 3 and its
traceback. Real servers, real pool processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from runner_support import Server
from tier_support import TIER_APPS, get_json, until, wait_for_pool_size


def initialized(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


@pytest.mark.timeout(90)
def test_the_initializer_runs_once_in_each_pool_process_and_in_replacements(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    log = tmp_path / "init.log"
    server = launch(
        "init_app:application", "--workers", "2", app_dir=TIER_APPS, env={"TIER_INIT_LOG": str(log)}
    )
    first = wait_for_pool_size(server, 2, "model")
    until(lambda: len(initialized(log)) == 2, "both pool processes to initialize")
    assert sorted(initialized(log)) == sorted(first)  # once each, though both workers declared
    for _ in range(6):
        code, body = get_json(server, "/predict")
        assert code == 200 and body["model"] == "tiny" and body["loaded_in"] == body["pid"]
    victim = sorted(first)[0]
    psutil.Process(victim).kill()
    replaced = until(
        lambda: (pids := wait_for_pool_size(server, 2, "model")) != first and pids,
        "a replacement process",
    )
    (new,) = replaced - first
    until(lambda: new in initialized(log), "the replacement to initialize")
    assert sorted(initialized(log)) == sorted([*first, new])  # no process initialized twice


@pytest.mark.timeout(60)
@pytest.mark.parametrize("preload", [False, True], ids=["imported-by-workers", "preload"])
def test_an_initializer_that_raises_stops_tornado_run_with_exit_3_and_its_traceback(
    launch: Callable[..., Server], preload: bool
) -> None:
    extra = ["--preload"] if preload else []
    server = launch(
        "bad_init_app:application", "--workers", "2", *extra, app_dir=TIER_APPS, wait_ready=False
    )
    assert server.wait(45) == 3
    log = server.log()
    assert "FileNotFoundError: model.bin: no such model file" in log
    assert "in load_missing_model" in log  # the initializer's own frame
    assert "Ready:" not in log


@pytest.mark.timeout(60)
def test_pool_processes_that_die_as_they_start_stop_tornado_run_with_exit_3(
    launch: Callable[..., Server],
) -> None:
    server = launch("dying_init_app:application", app_dir=TIER_APPS, wait_ready=False)
    assert server.wait(45) == 3
    assert "exit code 7" in server.log()
    assert "Ready:" not in server.log()
