"""The `--pid` file: checked before anything starts, written by the serving process, removed
at exit only if it still names this process."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import UsageError


def check_writable(path: Path | None, keep: bool) -> None:
    """Raise `UsageError` if `path` cannot be written; a file created by the check is removed
    unless `keep`."""
    if path is None:
        return
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as exc:
        raise UsageError(
            f"--pid {str(path)!r}: cannot write the pid file ({exc.strerror})"
        ) from None
    if not existed and not keep:
        path.unlink()


def write(path: Path | None) -> None:
    """Write this process's pid to `path` (if given)."""
    if path is not None:
        path.write_text(f"{os.getpid()}\n")


def remove(path: Path | None) -> None:
    """Remove `path` if it holds this process's pid (a newer master may own it by now)."""
    if path is None:
        return
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
