"""`--reload` for development: notice changed source files by polling their mtimes.

The master owns no thread, so it calls `SourceWatcher.poll()` from its loop (at most once per
`interval`) and restarts workers when it returns changed paths. No dependency: a scan of a
project of a few thousand files costs a few milliseconds.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger("tornado_run.reloader")

DEFAULT_SUFFIXES = (".py", ".toml", ".html", ".json", ".yaml", ".yml", ".ini", ".cfg")
SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "site-packages", "build", "dist", ".venv", "venv", ".tox"}
)
MAX_FILES = 20000


class SourceWatcher:
    """Watch files with `suffixes` under `roots` (hidden folders and virtualenvs skipped)."""

    def __init__(
        self,
        roots: Iterable[str | Path],
        suffixes: Iterable[str] = DEFAULT_SUFFIXES,
        interval: float = 1.0,
        max_files: int = MAX_FILES,
    ) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        self.suffixes = tuple(suffixes)
        self.interval = interval
        self.max_files = max_files
        self._warned = False
        self._mtimes = self._scan()
        self._next = time.monotonic() + interval

    def poll(self, now: float | None = None) -> list[Path]:
        """Paths added, changed or removed since the previous scan (empty before `interval`)."""
        now = time.monotonic() if now is None else now
        if now < self._next:
            return []
        self._next = now + self.interval
        current = self._scan()
        changed = [p for p, m in current.items() if self._mtimes.get(p) != m]
        changed += [p for p in self._mtimes if p not in current]
        self._mtimes = current
        return sorted(changed)

    @property
    def watched(self) -> int:
        """Number of files watched."""
        return len(self._mtimes)

    def _scan(self) -> dict[Path, int]:
        found: dict[Path, int] = {}
        for path in self._files():
            try:
                found[path] = path.stat().st_mtime_ns
            except OSError:
                continue
            if len(found) >= self.max_files:
                if not self._warned:
                    self._warned = True
                    log.warning("--reload watches only the first %d files", self.max_files)
                break
        return found

    def _files(self) -> Iterator[Path]:
        for root in self.roots:
            if root.is_file():
                yield root
                continue
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS]
                for name in files:
                    if name.endswith(self.suffixes):
                        yield Path(folder, name)
