"""Count the cores this process may really use: affinity and cgroup CPU quotas, not host CPUs."""

from __future__ import annotations

import math
import os
from pathlib import Path

DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cores(cgroup_root: Path = DEFAULT_CGROUP_ROOT) -> int:
    """Return the cores available to this process, at least 1.

    The smallest of: the CPU affinity mask, the cgroup v2 `cpu.max` quota and the cgroup v1
    CFS quota (each rounded up, as a quota of 1.5 cores still lets 2 processes make progress).
    """
    limits = [_affinity_cores()]
    for quota in (_cgroup_v2_quota(cgroup_root), _cgroup_v1_quota(cgroup_root)):
        if quota is not None:
            limits.append(max(1, math.ceil(quota)))
    return max(1, min(limits))


def _affinity_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cgroup_v2_quota(root: Path) -> float | None:
    """`cpu.max` holds "QUOTA PERIOD" or "max PERIOD"."""
    try:
        fields = (root / "cpu.max").read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _cgroup_v1_quota(root: Path) -> float | None:
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None
