"""`tornado-run --version`: this release and the versions of what serves with it."""

from __future__ import annotations

import platform
from importlib import metadata

from . import __version__

LIBRARIES = ("tornado", "httptools", "uvloop", "setproctitle")


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def version_text() -> str:
    """One line per component: tornado-run, Python, then each library's version."""
    lines = [
        f"tornado-run {__version__}",
        f"Python {platform.python_version()} ({platform.python_implementation()})",
    ]
    lines += [f"{name} {_installed(name)}" for name in LIBRARIES]
    return "\n".join(lines)
