"""Count the cores this process may really use: affinity and cgroup CPU quotas, not host CPUs.

The quota is read where the process actually is: its cgroup path comes from
`/proc/self/cgroup` (the v1 `cpu` controller's line and the v2 unified line), the folder that
path names comes from `/proc/self/mountinfo`, and every folder from there up to the mount is
read, because a quota on a parent (a systemd slice, a container) caps its children too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

PROC_SELF = Path("/proc/self")


def usable_cores(proc: Path = PROC_SELF) -> int:
    """Return the cores available to this process, at least 1.

    The smaller of the CPU affinity mask and the smallest cgroup CPU quota on the process's
    cgroup path (rounded up, as a quota of 1.5 cores still lets 2 processes make progress).
    `proc` is the process's /proc folder (tests pass a fake one).
    """
    limits = [_affinity_cores()]
    quota = cgroup_cpu_quota(proc)
    if quota is not None:
        limits.append(max(1, math.ceil(quota)))
    return max(1, min(limits))


def _affinity_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cgroup_cpu_quota(proc: Path = PROC_SELF) -> float | None:
    """The smallest CPU quota, in cores, on the process's cgroup and its ancestors; None if
    there is none (or no cgroup file system)."""
    try:
        membership = (proc / "cgroup").read_text()
        mounts = (proc / "mountinfo").read_text()
    except OSError:
        return None
    quotas = [
        quota
        for folder in cgroup_cpu_folders(membership, mounts)
        if (quota := _folder_quota(folder)) is not None
    ]
    return min(quotas, default=None)


def cgroup_cpu_folders(membership: str, mountinfo: str) -> list[Path]:
    """The folders that hold the CPU quota files of the process's cgroup and of each ancestor
    up to the mounted root, innermost first, for v1 (`cpu` controller) and v2 hierarchies.

    `membership` is the text of /proc/self/cgroup, `mountinfo` that of /proc/self/mountinfo.
    """
    folders: list[Path] = []
    for line in membership.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy_id, controllers, path = fields
        if hierarchy_id == "0" and not controllers:
            mount = _mount_for(mountinfo, "cgroup2", None, path)
        elif "cpu" in controllers.split(","):
            mount = _mount_for(mountinfo, "cgroup", "cpu", path)
        else:
            continue
        if mount is not None:
            folders += _up_to_mount(*mount)
    return folders


def _mount_for(
    mountinfo: str, fstype: str, controller: str | None, path: str
) -> tuple[Path, Path] | None:
    """(mount point, folder of `path`) for the first mount of that hierarchy whose root
    contains `path` (a container may mount only its own part of the hierarchy)."""
    for line in mountinfo.splitlines():
        mine, sep, theirs = line.partition(" - ")
        left, right = mine.split(), theirs.split()
        if not sep or len(left) < 5 or len(right) < 3 or right[0] != fstype:
            continue
        if controller is not None and controller not in right[2].split(","):
            continue
        root, point = _unescape(left[3]), Path(_unescape(left[4]))
        inside = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
        if inside == ".":
            return point, point
        if not inside.startswith(".."):
            return point, point / inside
    return None


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def _up_to_mount(point: Path, folder: Path) -> list[Path]:
    chain = [folder]
    while chain[-1] != point and chain[-1] != chain[-1].parent:
        chain.append(chain[-1].parent)
    return chain


def _folder_quota(folder: Path) -> float | None:
    """Cores allowed by one cgroup folder: v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD") or
    v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: no quota)."""
    try:
        fields = (folder / "cpu.max").read_text().split()
    except OSError:
        fields = []
    if not fields:
        try:
            fields = [
                (folder / "cpu.cfs_quota_us").read_text().strip(),
                (folder / "cpu.cfs_period_us").read_text().strip(),
            ]
        except OSError:
            return None
    if len(fields) != 2:
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:  # "max"
        return None
    return quota / period if quota > 0 and period > 0 else None
