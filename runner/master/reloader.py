"""`--reload` for development: notice changed source files by polling their mtimes.

The master owns no thread, so it calls `SourceWatcher.poll()` from its loop (at most once per
`interval`) and restarts workers when it returns changed paths. No dependency: a scan of a
project of a few thousand files costs a few milliseconds.

What is watched follows uvicorn's `--reload-dir`, `--reload-include` and `--reload-exclude`:
files under the folders whose name matches an include pattern (`*.py` always, unless
excluded by name) and no exclude pattern (`.*`, `.py[cod]`, `.sw.*`, `~*` always, unless
included by name); folders whose name matches an exclude pattern are skipped whole.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger("tornado_run.reloader")

DEFAULT_INCLUDE = ("*.py",)
DEFAULT_EXCLUDE = (".*", ".py[cod]", ".sw.*", "~*")
SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "site-packages", "build", "dist", ".venv", "venv", ".tox"}
)
MAX_FILES = 20000


def patterns(include: Iterable[str], exclude: Iterable[str]) -> tuple[list[str], list[str]]:
    """The include and exclude patterns in effect: the defaults plus the user's, where a
    pattern the user names on one side leaves the other side's defaults."""
    include, exclude = list(include), list(exclude)
    included = [p for p in _unique([*DEFAULT_INCLUDE, *include]) if p not in exclude]
    excluded = [p for p in _unique([*DEFAULT_EXCLUDE, *exclude]) if p not in include]
    return included, excluded


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class SourceWatcher:
    """Watch files matching `include` and not `exclude` under `roots` (folders whose name
    matches `exclude`, and virtualenvs, are skipped)."""

    def __init__(
        self,
        roots: Iterable[str | Path],
        include: Iterable[str] = DEFAULT_INCLUDE,
        exclude: Iterable[str] = DEFAULT_EXCLUDE,
        interval: float = 1.0,
        max_files: int = MAX_FILES,
    ) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        self.include, self.exclude = patterns(include, exclude)
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

    def _matches(self, path: Path, globs: list[str]) -> bool:
        return any(path.match(glob) for glob in globs)

    def _files(self) -> Iterator[Path]:
        seen: set[Path] = set()
        for root in self.roots:
            if root.is_file():
                yield root
                continue
            for folder, dirs, files in os.walk(root):
                dirs[:] = [
                    d
                    for d in dirs
                    if d not in SKIP_DIRS and not self._matches(Path(d), self.exclude)
                ]
                for name in files:
                    path = Path(folder, name)
                    if path in seen:
                        continue  # reached through two --reload-dir folders
                    if self._matches(path, self.include) and not self._matches(
                        Path(name), self.exclude
                    ):
                        seen.add(path)
                        yield path
