"""The master's bookkeeping for one worker process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..control.channel import EventReader


@dataclass
class WorkerRecord:
    """The master's bookkeeping for one worker process."""

    pid: int
    worker_id: int
    slot: int
    generation: int
    born: float  # time.monotonic()
    events: EventReader
    ready: bool = False
    retiring: bool = False
    kill_at: float | None = None  # SIGKILL if still alive at this monotonic time
    kill_reason: Literal["retire", "timeout"] = "retire"
    replace_reason: str | None = None  # recycling verdict: replace it, replacement first
    failure: dict[str, Any] | None = None  # the "failed" event, if the app could not load

    @property
    def retire_order(self) -> tuple[bool, int, float]:
        """Sorts first the worker a rolling replacement retires next: one due for recycling,
        then the oldest generation, then the oldest start."""
        return (self.replace_reason is None, self.generation, self.born)
