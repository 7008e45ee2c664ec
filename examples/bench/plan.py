"""What a benchmark run measures: its settings, its rows, and the interleaved rounds that
produce them (every variant once per round, so a noisy minute hurts all variants alike).
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from .harness import Skip

Values = dict[str, float | None]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    quick: bool
    seconds: float  # length of one measurement
    warmup: float
    rounds: int

    @classmethod
    def for_mode(
        cls, quick: bool, seconds: float | None = None, rounds: int | None = None
    ) -> Settings:
        """Quick: one round of 1 s rows, no warm-up load. Full: 3 rounds of 8 s rows."""
        if quick:
            return cls(True, seconds or 1.0, 0.0, rounds or 1)
        return cls(False, seconds or 8.0, 2.0, rounds or 3)


@dataclass
class Row:
    """One line of a table: the median of each figure over the rounds, or a skip note."""

    name: str
    values: Values = field(default_factory=dict)
    note: str = ""


@dataclass
class Column:
    key: str
    header: str
    digits: int = 0


@dataclass
class Section:
    """One table: rows, the columns to show, and which row the ratio column compares with."""

    key: str
    title: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    ratio_key: str | None = None
    baseline: str | None = None
    notes: list[str] = field(default_factory=list)
    text: str = ""  # verbatim output (e.g. a sub-benchmark's own table)


@dataclass
class Variant:
    name: str
    measure: Callable[[], Values]


def variant(name: str, measure: Callable[..., Values], *args: object) -> Variant:
    """A variant whose measurement is `measure(*args)`."""
    return Variant(name, functools.partial(measure, *args))


def interleaved(rounds: int, variants: list[Variant], log: Callable[[str], None]) -> list[Row]:
    """Measure every variant once per round, in turn; a variant that raises Skip is dropped
    from later rounds and its row carries the reason."""
    samples: dict[str, list[Values]] = {v.name: [] for v in variants}
    notes: dict[str, str] = {}
    for number in range(1, rounds + 1):
        for variant in variants:
            if variant.name in notes:
                continue
            log(f"  round {number}/{rounds}: {variant.name}")
            try:
                samples[variant.name].append(variant.measure())
            except Skip as skip:
                notes[variant.name] = str(skip)
                log(f"  skipped {variant.name}: {skip}")
    return [Row(v.name, _medians(samples[v.name]), notes.get(v.name, "")) for v in variants]


def _medians(samples: list[Values]) -> Values:
    keys = {key for sample in samples for key in sample}
    result: Values = {}
    for key in sorted(keys):
        numbers = [s[key] for s in samples if s.get(key) is not None]
        result[key] = statistics.median(numbers) if numbers else None  # type: ignore[type-var]
    return result
