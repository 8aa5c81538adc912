"""The score terms: :class:`ScoreTerm`, the per-model facts they read (:class:`ModelFacts`) and
:class:`Terms`, which computes them for one task (step 2 of the formula in :mod:`nexus_core.routing.score`)."""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

from nexus_core.routing.profile import TaskProfile
from nexus_core.routing.registry import ModelProfile
from nexus_core.routing.weights import DIMENSIONS, RoutingWeights

__all__ = ["ModelFacts", "ObservedTerms", "ScoreTerm", "Terms"]


class ScoreTerm(NamedTuple):
    """One named part of a model's score. ``value`` is an integer so terms add up exactly."""

    name: str
    value: int
    detail: str


class ObservedTerms(Protocol):
    """What the run store observed of each model (:class:`nexus_core.store.observed.ObservedStats`)."""

    def term(self, model_id: str) -> ScoreTerm:
        """The model's ``observed`` term."""
        ...

    def unavailable(self, model_id: str, now: float | None = None) -> tuple[float, str] | None:
        """``(until, reason)`` while the model rests after a rate limit (``now`` in Unix seconds)."""
        ...


class ModelFacts(NamedTuple):
    """Per-snapshot facts about one model that do not depend on the task (precomputed for speed by the snapshot)."""

    model: ModelProfile
    static_skip: str | None
    gateway_listed: bool | None
    quality: tuple[float, float, float, float]
    context_limit: int | None
    context_text: str
    price_in: float | None
    price_out: float | None
    price_text: str


class Terms:
    """The terms for one (profile, weights) pair; identical terms are shared between models."""

    def __init__(self, profile: TaskProfile, w: RoutingWeights, hint: str | None) -> None:
        self.profile = profile
        self.w = w
        need = profile.context_tokens
        self.need = need
        self.room = need * w.context_room_factor
        self.need_text = f"~{need:,} needed"
        self.context_unknown = ScoreTerm("context", 0, f"context limit unknown; the task needs ~{need:,} tokens")
        self.no_price = ScoreTerm("price", 0, "no pricing known")
        self.listed = ScoreTerm("availability", w.gateway_listed_points, "listed by the gateway's /v1/models")
        self.unlisted = ScoreTerm("availability", 0, "available (the gateway's model list is not known)")
        self.no_hint = ScoreTerm("hint", 0, "not hinted")
        self.no_history = ScoreTerm("observed", 0, "run history is off (--no-history or NEXUS_NO_HISTORY)")
        self.hint = ScoreTerm("hint", w.hint_points, f"forced by the hint {hint!r}")
        self._quality: dict[tuple[float, float, float, float], tuple[tuple[ScoreTerm, ...], int]] = {}

    def quality(self, q: tuple[float, float, float, float]) -> tuple[tuple[ScoreTerm, ...], int]:
        """The four quality terms for the scores ``q`` and their sum."""
        found = self._quality.get(q)
        if found is None:
            points = self.w.quality_points
            made = []
            for dim, score in zip(DIMENSIONS, q, strict=True):
                weight = self.profile.weights[dim]
                made.append(
                    ScoreTerm(
                        dim, round(weight * score * points), f"{dim} {score:g}/10 × weight {weight:.3f} × {points}"
                    )
                )
            found = (tuple(made), sum(t.value for t in made))
            self._quality[q] = found
        return found

    def context(self, e: ModelFacts) -> ScoreTerm:
        """The ``context`` term: room to spare, fits, too small or unknown against the task's need."""
        limit = e.context_limit
        if limit is None:
            return self.context_unknown
        if limit < self.need:
            return ScoreTerm(
                "context", self.w.context_too_small_points, f"too small: {e.context_text} tokens < {self.need_text}"
            )
        if limit >= self.room:
            return ScoreTerm(
                "context",
                self.w.context_room_points,
                f"room to spare: {e.context_text} tokens ≥ {self.w.context_room_factor:g} × {self.need_text}",
            )
        return ScoreTerm("context", 0, f"fits: {e.context_text} tokens ≥ {self.need_text}")

    def price(self, e: ModelFacts) -> ScoreTerm:
        """The ``price`` term: minus the estimated USD cost in points (capped), 0 without pricing."""
        if e.price_in is None or e.price_out is None:
            return self.no_price
        usd = (self.profile.token_estimate * e.price_in + self.profile.output_tokens * e.price_out) / 1_000_000
        points = round(usd * self.w.price_points_per_usd)
        cap = self.w.price_points_cap
        return ScoreTerm(
            "price",
            -(cap if points > cap else points),
            f"≈${usd:.4f} for ~{self.profile.token_estimate:,} in + ~{self.profile.output_tokens:,} out, {e.price_text}",
        )

    def availability(self, e: ModelFacts, cooling: float, resting: str | None = None) -> ScoreTerm:
        """The ``availability`` term: listed by the gateway, list unknown, or forced by the hint while unavailable."""
        if cooling:
            return ScoreTerm(
                "availability", 0, f"rate-limited, {math.ceil(cooling)} s of cool-down left; forced by the hint"
            )
        if resting:
            return ScoreTerm("availability", 0, f"{resting}; forced by the hint")
        return self.listed if e.gateway_listed else self.unlisted
