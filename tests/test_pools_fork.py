"""Fork safety: pools used before os.fork() (an app preloaded by the master) work in every
child, each child gets its own threads and processes, and the parent's pool survives."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PRELOADED_APP = """
import asyncio, json, os, sys, threading
import psutil
from tornado_run.decorators import pools, unblock

@unblock
def thread_owner():
    return os.getpid(), threading.current_thread().name

@unblock(pool="process")
def process_owner():
    return os.getpid()

def grandparent(pid):
    return psutil.Process(pid).parent().parent().ppid()  # worker -> zygote -> forkserver -> owner

def main():
    # "Preload": the pools are used before the fork, as an app touching them at import would.
    parent_thread = asyncio.run(thread_owner())
    parent_worker = asyncio.run(process_owner())

    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            owner, thread = asyncio.run(thread_owner())
            worker = asyncio.run(process_owner())
            print(json.dumps({
                "child": os.getpid(), "thread_owner": owner, "thread": thread,
                "worker": worker, "worker_owner": grandparent(worker),
            }), flush=True)
            pools.shutdown()
            sys.exit(0)  # a normal exit runs atexit cleanup in the child
        children.append(pid)

    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    after = asyncio.run(process_owner())
    print(json.dumps({
        "parent": os.getpid(), "codes": codes, "before": parent_worker, "after": after,
        "worker_owner": grandparent(after), "thread_owner": parent_thread[0],
    }), flush=True)
    pools.shutdown()


if __name__ == "__main__":
    main()
"""


@pytest.mark.timeout(90)
def test_pools_touched_before_fork_work_in_every_child_and_in_the_parent(tmp_path: Path) -> None:
    script = tmp_path / "preloaded_app.py"
    script.write_text(textwrap.dedent(PRELOADED_APP))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert done.returncode == 0, done.stderr
    *children, parent = _json_objects(done.stdout)
    assert len(children) == 2
    assert parent["codes"] == [0, 0]
    for child in children:
        assert child["thread_owner"] == child["child"]  # its own thread pool, in its own pid
        assert child["worker_owner"] == child["child"]  # its own process pool and forkserver
        assert child["worker"] != parent["before"]
    # The children's exit did not take the parent's pool processes with them.
    assert parent["after"] == parent["before"] or parent["worker_owner"] == parent["parent"]
    assert parent["worker_owner"] == parent["parent"]
    assert parent["thread_owner"] == parent["parent"]


def _json_objects(text: str) -> list[dict[str, object]]:
    """Every JSON object printed, in order (two forked children may share one pipe line)."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        value, at = decoder.raw_decode(text, at)
        objects.append(value)
    return objects
