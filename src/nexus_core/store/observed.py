"""The router's ``observed`` term: what the run store saw of each model lately, with its evidence.

LiteLLM's router counts failures per deployment (``allowed_fails`` per minute) and, past that,
cools the deployment down for ``cooldown_time`` (or the ``Retry-After`` it got): a binary
switch, silent about why. A circuit breaker adds a half-open state that lets one probe through.
Here instead each of a model's last ``per_model`` attempts (among the store's newest ``max_rows``) that failed by the model's fault
(gateway_error, rate_limited, connection, stalled, cut_stream, model_not_found — not auth,
config or bad_request, which every model behind one gateway meets alike) weighs
``0.5 ** (age / half_life)``; the penalty is ``failure_points`` per weighted failure, scaled by
the failed share of recent attempts, so successes (the half-open probes) earn a model back
gradually. Latency adds a small term: the model's median time-to-success against the median of
all models. The sum is clamped to [``floor``, ``ceiling``] (-150, +30 on the router's quality
scale, where the four quality terms add up to ~500–1000) so it moves close calls but never
outweighs quality entirely. A rate-limited model rests for its ``Retry-After`` (default 60 s)
unless it succeeded since; one whose newest attempt met "model not found" rests for
``not_found_rest_s`` and one that found its gateway unreachable for ``connection_rest_s``:
:meth:`ObservedStats.unavailable` says until when and why. A health check that sees the model
working lifts the rest (:meth:`ObservedStats.lifted`, used by :mod:`nexus_core.routing.health`).
:func:`observed_stats` reads the store once (one query); lookups are O(1).
"""

from __future__ import annotations

import math
import sqlite3
import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nexus_core.routing.terms import ScoreTerm
from nexus_core.store.db import StoreError, connect, default_path

__all__ = ["MODEL_FAULTS", "RESTING_FAULTS", "ObservedStats", "ObservedWeights", "load_observed", "observed_stats"]

MODEL_FAULTS = frozenset({"gateway_error", "rate_limited", "connection", "stalled", "cut_stream", "model_not_found"})
#: The failures after which a model rests (is not routed to) for a while, unless it succeeded since.
RESTING_FAULTS = frozenset({"rate_limited", "model_not_found", "connection"})


@dataclass(frozen=True)
class ObservedWeights:
    """Every number of the observed term."""

    half_life_s: float = 15 * 60
    window_s: float = 6 * 3600
    failure_points: float = 60.0
    latency_points: int = 30
    floor: int = -150
    ceiling: int = 30
    default_rest_s: float = 60.0
    not_found_rest_s: float = 15 * 60
    connection_rest_s: float = 60.0
    per_model: int = 20
    max_rows: int = 5_000


_NONE = ScoreTerm("observed", 0, "no recent attempts")


@dataclass(frozen=True)
class ObservedStats:
    """A snapshot of the observed terms at ``now`` (Unix seconds)."""

    now: float
    terms: dict[str, ScoreTerm] = field(default_factory=dict)
    rests: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: The failure class that set each rest (absent: ``rate_limited``).
    rest_kinds: dict[str, str] = field(default_factory=dict)

    def term(self, model_id: str) -> ScoreTerm:
        """The model's ``observed`` term (0, "no recent attempts", when the store saw none)."""
        return self.terms.get(model_id, _NONE)

    def unavailable(self, model_id: str, now: float | None = None) -> tuple[float, str] | None:
        """``(until, reason)`` while the model rests after a rate limit, "model not found" or an
        unreachable gateway, else None."""
        rest = self.rests.get(model_id)
        if rest is None:
            return None
        at, until = rest
        now = self.now if now is None else now
        if now >= until:
            return None
        ago, left = math.floor(now - at), math.ceil(until - now)
        kind = self.rest_kinds.get(model_id, "rate_limited")
        if kind == "model_not_found":
            return until, (
                f"the last run got “model not found” {ago} s ago; resting {left} s more "
                "(a passing health check, e.g. `nexus-agents route --probe`, puts it back)"
            )
        if kind == "connection":
            return until, f"the gateway was unreachable in the last run {ago} s ago; resting {left} s more"
        return until, f"rate limited {ago} s ago; resting {left} s more"

    def lifted(self, model_ids: Iterable[str], before: float, *, kinds: Iterable[str] | None = None) -> ObservedStats:
        """A copy without the rests of ``model_ids`` that began before ``before`` (Unix seconds),
        only of the failure ``kinds`` when given: a later health check saw those models working."""
        wanted = None if kinds is None else frozenset(kinds)
        drop = {
            m
            for m in model_ids
            if m in self.rests
            and self.rests[m][0] <= before
            and (wanted is None or self.rest_kinds.get(m, "rate_limited") in wanted)
        }
        if not drop:
            return self
        return replace(
            self,
            rests={m: r for m, r in self.rests.items() if m not in drop},
            rest_kinds={m: k for m, k in self.rest_kinds.items() if m not in drop},
        )


# The newest ``max_rows`` finished attempts (through the finish-time index), then each model's newest ``per_model``.
_QUERY = (
    "SELECT model_id, outcome_class, started_at, finished_at, retry_after_s FROM ("
    " SELECT *, row_number() OVER (PARTITION BY model_id ORDER BY finished_at DESC) AS k FROM ("
    "  SELECT model_id, outcome_class, started_at, finished_at, retry_after_s FROM attempts"
    "  WHERE finished_at IS NOT NULL AND finished_at >= ? AND model_id IS NOT NULL"
    "  ORDER BY finished_at DESC LIMIT ?)"
    ") WHERE k <= ? ORDER BY finished_at DESC"
)


def observed_stats(
    store: Any, *, now: float | None = None, weights: ObservedWeights = ObservedWeights()
) -> ObservedStats:
    """Read a :class:`~nexus_core.store.runs.RunStore`'s recent attempts (one query); every model's term."""
    now = time.time() if now is None else now
    return _compute(store._read(_QUERY, _args(now, weights)), now, weights)


def load_observed(
    env: Mapping[str, str] | None = None, *, now: float | None = None, weights: ObservedWeights = ObservedWeights()
) -> ObservedStats:
    """The observed terms from the store of ``env``; empty when it has no file yet (none is created)
    or cannot be read (routing never fails for want of history)."""
    now = time.time() if now is None else now
    path = default_path(env)
    if not path.exists():
        return ObservedStats(now=now)
    try:
        conn = connect(path)
        try:
            rows = conn.execute(_QUERY, _args(now, weights)).fetchall()
        finally:
            conn.close()
    except (StoreError, sqlite3.Error):
        return ObservedStats(now=now)
    return _compute(rows, now, weights)


def _args(now: float, weights: ObservedWeights) -> tuple[float, int, int]:
    return (now - weights.window_s, weights.max_rows, weights.per_model)


def _compute(rows: list[Any], now: float, weights: ObservedWeights) -> ObservedStats:
    per: dict[str, list[tuple[str | None, float, float, float | None]]] = {}
    for model, failure, start, end, retry in rows:
        per.setdefault(model, []).append((failure, start, end, retry))
    latency = {
        m: statistics.median(end - start for f, start, end, _ in a if f is None)
        for m, a in per.items()
        if any(f is None for f, *_ in a)
    }
    overall = statistics.median(latency.values()) if latency else None
    terms: dict[str, ScoreTerm] = {}
    rests: dict[str, tuple[float, float]] = {}
    rest_kinds: dict[str, str] = {}
    for model, attempts in per.items():
        failed = ok = 0.0
        counted = faults = 0
        classes: dict[str, int] = {}
        last_fault: float | None = None
        succeeded_since = False
        for failure, _, end, retry in attempts:  # newest first
            decay = 0.5 ** (max(0.0, now - end) / weights.half_life_s)
            if failure is None:
                ok += decay
                counted += 1
                succeeded_since = True
            elif failure in MODEL_FAULTS:
                failed += decay
                counted += 1
                faults += 1
                classes[failure] = classes.get(failure, 0) + 1
                last_fault = end if last_fault is None else max(last_fault, end)
                if failure in RESTING_FAULTS and model not in rests and not succeeded_since:
                    rests[model] = (end, end + _rest_span(failure, retry, weights))
                    rest_kinds[model] = failure
                    succeeded_since = True  # only the newest resting fault sets the rest
        value = 0.0
        parts = []
        if failed:
            value -= weights.failure_points * failed * failed / (failed + ok)
            kinds = ", ".join(f"{c}" if n == 1 else f"{c} ×{n}" for c, n in sorted(classes.items()))
            assert last_fault is not None
            if counted == 1:
                parts.append(f"the last attempt failed ({kinds}), {_ago(now - last_fault)} ago")
            else:
                parts.append(
                    f"{faults} of the last {counted} attempts failed ({kinds}), last {_ago(now - last_fault)} ago"
                )
        if overall and model in latency:
            ratio = latency[model] / overall
            lat = max(-weights.latency_points, min(weights.latency_points, round(weights.latency_points * (1 - ratio))))
            value += lat
            parts.append(f"median {latency[model]:.1f} s to success vs {overall:.1f} s for all models")
        if not parts:
            continue
        total = max(weights.floor, min(weights.ceiling, round(value)))
        terms[model] = ScoreTerm("observed", total, "; ".join(parts))
    return ObservedStats(now=now, terms=terms, rests=rests, rest_kinds=rest_kinds)


def _rest_span(failure: str, retry: float | None, weights: ObservedWeights) -> float:
    if failure == "model_not_found":
        return weights.not_found_rest_s
    if failure == "connection":
        return weights.connection_rest_s
    return retry if retry is not None else weights.default_rest_s


def _ago(seconds: float) -> str:
    return f"{round(seconds)} s" if seconds < 90 else f"{round(seconds / 60)} min"
