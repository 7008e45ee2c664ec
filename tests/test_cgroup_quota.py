"""`--workers auto` honours a CPU quota set on the process's own cgroup or on a parent of it,
as systemd's CPUQuota= and container runtimes set it. The cgroups are real: made here (as
root, in whichever hierarchy the machine mounts the cpu controller) and removed after."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from runner_support import APPS, TORNADO_RUN, clean_env, http_get, wait_until
from tornado_run.runner.cpus import cgroup_cpu_folders

PERIOD = 100_000


@dataclass
class CpuHierarchy:
    """Where this process sits in the hierarchy that has the cpu controller."""

    version: int  # 1 or 2
    own: Path  # the folder of this process's cgroup

    def limit(self, folder: Path, cores: int) -> None:
        if self.version == 2:
            (folder / "cpu.max").write_text(f"{cores * PERIOD} {PERIOD}\n")
        else:
            (folder / "cpu.cfs_period_us").write_text(f"{PERIOD}\n")
            (folder / "cpu.cfs_quota_us").write_text(f"{cores * PERIOD}\n")

    def enable_cpu_below(self, folder: Path) -> None:
        """v2 only hands the cpu files to children whose parent enabled the controller."""
        if self.version == 2:
            (folder / "cgroup.subtree_control").write_text("+cpu\n")


def _cpu_hierarchy() -> CpuHierarchy | None:
    membership = Path("/proc/self/cgroup").read_text()
    mounts = Path("/proc/self/mountinfo").read_text()
    for folder in cgroup_cpu_folders(membership, mounts)[:1]:
        if (folder / "cpu.cfs_quota_us").exists():
            return CpuHierarchy(1, folder)
    for line in membership.splitlines():
        if line.startswith("0::"):
            for folder in cgroup_cpu_folders(line, mounts)[:1]:
                if "cpu" in (folder / "cgroup.controllers").read_text().split():
                    return CpuHierarchy(2, folder)
    return None


def _move_out_and_remove(hierarchy: CpuHierarchy, folders: list[Path]) -> None:
    for folder in reversed(folders):  # innermost first
        if not folder.exists():
            continue
        for pid in (folder / "cgroup.procs").read_text().split():
            (hierarchy.own / "cgroup.procs").write_text(f"{pid}\n")
        folder.rmdir()


@pytest.fixture
def nested_cgroups() -> Iterator[tuple[CpuHierarchy, Path, Path]]:
    """(hierarchy, parent, child): two new nested cgroups below this process's own one."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 usable cores to tell a 1-CPU quota from the machine's cores")
    hierarchy = _cpu_hierarchy()
    parent = hierarchy.own / f"tornado-run-test-{os.getpid()}" if hierarchy else None
    if hierarchy is None or parent is None:
        pytest.skip("no cgroup hierarchy with the cpu controller is mounted")
    child = parent / "app"
    try:
        hierarchy.enable_cpu_below(hierarchy.own)
        parent.mkdir()
        hierarchy.enable_cpu_below(parent)
        child.mkdir()
    except OSError as exc:
        _move_out_and_remove(hierarchy, [parent, child])
        pytest.skip(f"cannot create cgroups here: {exc}")
    try:
        yield hierarchy, parent, child
    finally:
        _move_out_and_remove(hierarchy, [parent, child])
        assert not parent.exists()


def _workers_auto_in(cgroup: Path) -> str:
    """Run `tornado-run ... --workers auto --check` moved into `cgroup` before it starts."""
    command = [str(TORNADO_RUN), "hello:application", "--app-dir", str(APPS)]
    command += ["--workers", "auto", "--check", "--bind", "127.0.0.1:0"]
    script = f"echo $$ > {shlex.quote(str(cgroup / 'cgroup.procs'))} && exec {shlex.join(command)}"
    result = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=clean_env(), timeout=30
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"(\d+) worker\(s\)", result.stdout)
    assert match is not None, result.stdout
    return match.group(1)


@pytest.mark.timeout(60)
def test_workers_auto_counts_a_one_cpu_quota_on_its_own_cgroup(
    nested_cgroups: tuple[CpuHierarchy, Path, Path],
) -> None:
    hierarchy, _, child = nested_cgroups
    assert _workers_auto_in(child) == str(len(os.sched_getaffinity(0)))
    hierarchy.limit(child, cores=1)
    assert _workers_auto_in(child) == "1"


@pytest.mark.timeout(60)
def test_workers_auto_counts_a_one_cpu_quota_on_a_parent_cgroup(
    nested_cgroups: tuple[CpuHierarchy, Path, Path],
) -> None:
    hierarchy, parent, child = nested_cgroups
    hierarchy.limit(parent, cores=1)
    assert _workers_auto_in(child) == "1"


@pytest.mark.timeout(60)
def test_a_server_in_a_one_cpu_cgroup_starts_one_worker_and_sizes_pools_for_one_core(
    nested_cgroups: tuple[CpuHierarchy, Path, Path], tmp_path: Path
) -> None:
    hierarchy, parent, child = nested_cgroups
    hierarchy.limit(parent, cores=1)
    log = tmp_path / "server.log"
    command = [str(TORNADO_RUN), "hello:application", "--app-dir", str(APPS)]
    command += ["--workers", "auto", "--bind", "127.0.0.1:0"]
    script = f"echo $$ > {shlex.quote(str(child / 'cgroup.procs'))} && exec {shlex.join(command)}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            start_new_session=True,
        )
    try:
        wait_until(lambda: "Ready:" in log.read_text(), 30, "the server to be ready")
        assert "Ready: 1 worker(s) serving" in log.read_text()
        members = (child / "cgroup.procs").read_text().split()
        assert len(members) == 2  # the master and its one worker (no process pool used)
        match = re.search(r"Listening at http://127.0.0.1:(\d+)", log.read_text())
        assert match is not None
        env = http_get(int(match.group(1)), "/env").json()
        assert "TORNADO_RUN_CPU_TIER" in env  # a process pool of size auto: `usable_cores()`
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
