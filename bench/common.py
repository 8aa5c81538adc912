"""One shape for every benchmark result: the figure, the goal, and whether it holds.

A bench module exposes ``measure() -> list[Measure]`` (sync) and prints through :func:`emit`.
``python -m bench`` (the benchmarks issue) runs them all and writes the JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Measure:
    """One measured figure against its goal. ``samples`` are the raw runs (for min/max noise)."""

    name: str
    value: float
    unit: str
    goal: str
    holds: bool
    samples: Sequence[float] = field(default_factory=tuple)
    note: str = ""

    def line(self) -> str:
        noise = ""
        if len(self.samples) > 1:
            noise = f" (n={len(self.samples)}, min {min(self.samples):.4g}, max {max(self.samples):.4g})"
        verdict = "OK  " if self.holds else "MISS"
        extra = f" — {self.note}" if self.note else ""
        return f"{verdict} {self.name}: {self.value:.4g} {self.unit}{noise}; goal {self.goal}{extra}"


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def emit(measures: Sequence[Measure], stream=None) -> None:
    """Print one line per measure."""
    stream = stream or sys.stdout
    for m in measures:
        print(m.line(), file=stream, flush=True)


def to_json(measures: Sequence[Measure]) -> str:
    return json.dumps([asdict(m) | {"samples": list(m.samples)} for m in measures], indent=2)
