"""Process titles, so `ps` and `top` tell the master, the workers and the CPU tier apart
(`tornado-run: master [myapp:application]`, `tornado-run: worker 0`). Uses setproctitle, which
rewrites the process's argv area and its kernel name; without it titles are left as they are."""

from __future__ import annotations

from collections.abc import Callable

PREFIX = "tornado-run: "


def _setter() -> Callable[[str], None] | None:
    try:
        from setproctitle import setproctitle
    except ImportError:  # an installation without the C extension still serves
        return None
    return setproctitle


_SET = _setter()


def set_title(text: str) -> None:
    """Set this process's title to `tornado-run: <text>` (no-op without setproctitle)."""
    if _SET is not None:
        _SET(PREFIX + text)
