"""Process pools' `initializer`/`initargs`: run once in each pool process before its first call
and again in each replacement; one that raises makes the call raise it; bad declarations are
one clear ConfigurationError line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from decorators_support import run
from tornado_run.decorators import WorkerCrashed, pools, unblock
from tornado_run.runner.lifecycle import ConfigurationError

LOADED: dict[str, Any] = {}


def load_model(name: str, scale: int) -> None:
    """A stand-in for loading a model once per process."""
    LOADED.setdefault("runs", 0)
    LOADED["runs"] += 1
    LOADED["model"] = (name, scale, os.getpid())


def refuse_to_load() -> None:
    raise FileNotFoundError("model weights missing: /nowhere/weights.bin")


pools.configure(
    "initialized", kind="process", size=2, initializer=load_model, initargs=("resnet", 3)
)
pools.configure("by-name", kind="process", size=1, initializer=f"{__name__}:load_model",
                initargs=["by-name", 1])  # fmt: skip
pools.configure("broken-init", kind="process", size=1, initializer=refuse_to_load)


@unblock(pool="initialized")
def model_state() -> tuple[Any, int, int]:
    return LOADED.get("model"), LOADED.get("runs", 0), os.getpid()


@unblock(pool="initialized")
def crash() -> None:
    os._exit(5)


@unblock(pool="by-name")
def model_state_by_name() -> tuple[Any, int, int]:
    return LOADED.get("model"), LOADED.get("runs", 0), os.getpid()


@unblock(pool="broken-init")
def never_runs() -> int:
    return 1


@pytest.fixture(scope="module", autouse=True)
def shared_pools() -> Iterator[None]:
    yield
    pools.shutdown(wait=True)


def test_the_initializer_runs_once_in_each_pool_process_before_its_first_call() -> None:
    async def main() -> list[tuple[Any, int, int]]:
        import asyncio

        return list(await asyncio.gather(*(model_state() for _ in range(12))))

    states = run(main)
    for model, runs, pid in states:
        assert model == ("resnet", 3, pid)  # ran in that very process, with its initargs
        assert runs == 1  # once, however many calls followed
    assert pid != os.getpid() and "model" not in LOADED


def test_a_replacement_process_runs_the_initializer_again() -> None:
    first = {run(model_state)[2] for _ in range(4)}
    with pytest.raises(WorkerCrashed, match="exit code 5"):
        run(crash)
    states = [run(model_state) for _ in range(6)]
    for model, runs, pid in states:
        assert model == ("resnet", 3, pid) and runs == 1
    assert {pid for _, _, pid in states} - first  # a new process, initialized too


def test_an_initializer_named_module_colon_function_is_imported_in_the_pool_process() -> None:
    model, runs, pid = run(model_state_by_name)
    assert model == ("by-name", 1, pid) and runs == 1


def test_an_initializer_that_raises_makes_the_call_raise_it_with_its_traceback() -> None:
    for _ in range(2):  # every call tries again: the next one raises it too, it never hangs
        started = time.monotonic()
        with pytest.raises(FileNotFoundError, match="model weights missing") as caught:
            run(never_runs)
        assert "refuse_to_load" in str(caught.value.__cause__)
        assert time.monotonic() - started < 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initializer": lambda: None}, r"bad\.initializer = <function .*lambda.*module-level"),
        ({"initializer": "no colon"}, r"bad\.initializer = 'no colon': expected \"module:function"),
        ({"initializer": load_model, "initargs": 3}, r"pools\.bad\.initargs = 3: expected a list"),
        ({"initargs": [1]}, r"pools\.bad\.initargs = \[1\]: needs an initializer"),
    ],
)  # fmt: skip
def test_bad_initializer_settings_fail_naming_key_and_value(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        pools.configure("bad", kind="process", **kwargs)


def test_thread_pools_take_no_initializer() -> None:
    with pytest.raises(ConfigurationError, match="unknown setting for kind 'thread'"):
        pools.configure("bad", kind="thread", initializer=load_model)


SCRIPT = """
import asyncio, json, os
from tornado_run.decorators import pools, unblock
import initmodule

@unblock(pool="warm")
def state():
    return initmodule.STATE, os.getpid()

if __name__ == "__main__":
    print(json.dumps(asyncio.run(state())))
    pools.shutdown()
"""


def test_a_pools_table_names_the_initializer_as_module_colon_function(tmp_path: Path) -> None:
    (tmp_path / "initmodule.py").write_text(
        "STATE = {}\ndef warm(size):\n    STATE['size'] = size\n"
    )
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT))
    table = {"warm": {"kind": "process", "size": 1, "initializer": "initmodule:warm",
                      "initargs": [64]}}  # fmt: skip
    env = {**os.environ, "TORNADO_RUN_POOLS_CONFIG": json.dumps(table)}
    done = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    state, pid = json.loads(done.stdout)
    assert state == {"size": 64} and pid != done.returncode
