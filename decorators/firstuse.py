"""The first use of pools or background jobs in this process, announced to whoever waits.

The registry and the jobs module report their first use here; `shutdown` subscribes to it,
so neither of them imports the module that stops them.
"""

from __future__ import annotations

from collections.abc import Callable

_subscribers: list[Callable[[], None]] = []
_state = {"used": False}


def subscribe(callback: Callable[[], None]) -> None:
    """Run `callback` once, at the first use (at once if that has already happened)."""
    if _state["used"]:
        callback()
    else:
        _subscribers.append(callback)


def mark_used() -> None:
    """Record a use; the first one runs every subscribed callback."""
    if _state["used"]:
        return
    _state["used"] = True
    for callback in _subscribers:
        callback()
