"""The open-files limit, raised once at start: the soft RLIMIT_NOFILE goes up to the hard limit
in the master, before any fork, so every worker inherits it. Each worker is its own process, so
what `--max-connections` needs is per process: the connections plus `HEADROOM` descriptors for
listening sockets, the loop, pipes, log files and pools."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("tornado_run.master")

HEADROOM = 64
"""Descriptors a worker holds besides its client connections."""


def raise_open_files_limit(max_connections: int) -> int:
    """Raise the soft open-files limit to the hard one; return the soft limit now in force.
    Logs the figure at debug level, and one warning when the hard limit is below what
    `max_connections` per worker needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft and (hard == resource.RLIM_INFINITY or hard > soft):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, _nr_open())
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("open files: could not raise the soft limit to %d: %s", target, exc)
    log.debug("open files: soft limit %d (hard %s)", soft, _describe(hard))
    needed = max_connections + HEADROOM
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open files: the limit is %d but --max-connections %d needs about %d per worker; "
            "raise the hard limit (ulimit -Hn, LimitNOFILE=, minfds=) or lower --max-connections",
            soft,
            max_connections,
            needed,
        )
    return soft


def _nr_open() -> int:
    """The kernel's ceiling for one process's descriptors (Linux), for an unlimited hard limit."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 1 << 20


def _describe(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
