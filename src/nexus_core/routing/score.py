"""Routing: a task profile, a score per model as a breakdown of named terms, availability, hints, fallback chains.

The formula (every number lives in :data:`WEIGHTS`, a frozen :class:`RoutingWeights`):

1. **Task profile** (:func:`profile_task`). The text (its first ``keyword_scan_chars``
   characters) is read as lower-case words; each dimension (reasoning, code, speed, cost)
   has a keyword list (:data:`TASK_KEYWORDS`; a keyword ending in ``*`` matches any word
   that starts with it). A dimension's *emphasis* is its base emphasis plus
   ``keyword_emphasis`` per distinct keyword matched (at most ``keyword_hits_counted``
   count), plus ``small_task_speed_emphasis`` to speed for a small task without reasoning
   keywords, and ``large_task_reasoning_emphasis`` to reasoning for a large or huge one,
   capped at 10. An explicit preference (0–10) replaces the emphasis of its dimension. The *weights* are the emphases
   divided by their sum. The token estimate is ``ceil(characters / chars_per_token)``; the
   context the task needs is that estimate + OpenCode's own prompt overhead + the expected
   output (or the explicit ``context`` preference).
2. **Score** (:func:`route`). Each available model gets integer terms, and its total is
   their sum, so the terms always add up exactly:

   * ``reasoning``, ``code``, ``speed``, ``cost``: ``round(weight × quality × quality_points)``;
   * ``context``: ``+context_room_points`` when the context limit is at least
     ``context_room_factor`` × the need, ``0`` when it just fits or is unknown,
     ``context_too_small_points`` when it does not fit;
   * ``price``: ``-round(estimated USD × price_points_per_usd)`` (capped) from the profile's
     pricing, ``0`` when unknown;
   * ``availability``: ``+gateway_listed_points`` when the gateway's ``/v1/models`` lists the
     model, ``0`` when that list is unknown (or when a hint forces an unavailable model);
   * ``observed``: what the run store saw of the model lately (recent failures by class with
     exponential decay, latency against the other models), bounded, with its evidence in the
     detail (:mod:`nexus_core.store.observed`); ``0`` when history is off or empty;
   * ``hint``: ``+hint_points`` for the model the hint names, else ``0``.

3. **Ranking**: total descending, then model id ascending (a stable, total order).

A model is *skipped* (not scored, reason given) when ``opencode`` is not on PATH, when its
``provider/model`` is not declared in the merged OpenCode config, when the gateway's model
list is known and lacks it, when it is ``opencode-default`` and the config names no default
model, while the last health check marks it unavailable (gateway down, key missing, not served,
its probe failed: :mod:`nexus_core.routing.health`), or while it cools down or rests after a rate
limit, "model not found" or an unreachable gateway (a hint overrides only those last three).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from nexus_core.errors import NexusError
from nexus_core.routing.profile import TaskProfile, profile_task
from nexus_core.routing.registry import ModelProfile
from nexus_core.routing.snapshot import RoutingSnapshot, SkippedModel, build_snapshot
from nexus_core.routing.terms import ScoreTerm, Terms
from nexus_core.routing.weights import WEIGHTS, RoutingWeights

# RoutingSnapshot, build_snapshot, TaskProfile, profile_task, WEIGHTS and RoutingWeights are re-exported:
# most callers build a snapshot, profile a task and route it with one import.
__all__ = [
    "WEIGHTS",
    "RoutingDecision",
    "RoutingSnapshot",
    "RoutingWeights",
    "ScoredModel",
    "TaskProfile",
    "build_snapshot",
    "fallback_chain",
    "profile_task",
    "resolve_hint",
    "route",
]


class ScoredModel(NamedTuple):
    """An available model with its score breakdown; ``total`` is the sum of the term values."""

    model: ModelProfile
    terms: tuple[ScoreTerm, ...]
    total: int

    @property
    def id(self) -> str:
        return self.model.id

    def term(self, name: str) -> ScoreTerm:
        return next(t for t in self.terms if t.name == name)


@dataclass(frozen=True)
class RoutingDecision:
    """The outcome of :func:`route`: every available model ranked, the skipped ones, the choice."""

    profile: TaskProfile
    hint: str | None
    ranked: tuple[ScoredModel, ...]
    skipped: tuple[SkippedModel, ...]
    chosen: ScoredModel | None
    chain: tuple[ModelProfile, ...]
    reason: str

    def chosen_or_raise(self) -> ScoredModel:
        """The chosen model, or a :class:`NexusError` saying why there is none."""
        if self.chosen is None:
            raise NexusError(
                self.reason, "Run `nexus-agents route --explain` to see every model and why it was skipped"
            )
        return self.chosen

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view: every ranked model's terms and total, the skipped with reasons."""
        return {
            "chosen": self.chosen.id if self.chosen else None,
            "chosen_cli_model_name": self.chosen.model.cli_model_name if self.chosen else None,
            "reason": self.reason,
            "hint": self.hint,
            "chain": [m.id for m in self.chain],
            "chain_cli_model_names": [m.cli_model_name for m in self.chain],
            "profile": self.profile.model_dump(mode="json"),
            "models": [
                {
                    "rank": rank,
                    "id": s.id,
                    "cli_model_name": s.model.cli_model_name,
                    "total": s.total,
                    "terms": [{"name": t.name, "value": t.value, "detail": t.detail} for t in s.terms],
                }
                for rank, s in enumerate(self.ranked, 1)
            ],
            "skipped": [
                {"id": s.id, "cli_model_name": s.model.cli_model_name, "reason": s.reason} for s in self.skipped
            ],
        }


def resolve_hint(snapshot: RoutingSnapshot, hint: str) -> ModelProfile:
    """The model a hint names by id, alias or CLI model name; a :class:`NexusError` listing the closest otherwise."""
    model = snapshot.registry.find(hint)
    if model is not None:
        return model
    close = snapshot.registry.closest(hint.strip())
    nearest = f"; closest: {', '.join(close)}" if close else ""
    raise NexusError(
        f"no model matches the hint {hint!r}{nearest}",
        "Run `nexus-agents models` to list every id, alias and CLI model name",
    )


def route(
    snapshot: RoutingSnapshot,
    profile: TaskProfile,
    hint: str | None = None,
    *,
    now: float | None = None,
    weights: RoutingWeights = WEIGHTS,
) -> RoutingDecision:
    """Score every available model for ``profile`` and choose one (the hinted one when given).

    Raises :class:`NexusError` for a hint that names no model.
    """
    hinted = resolve_hint(snapshot, hint) if hint else None
    hinted_id = hinted.id if hinted is not None else None
    now = snapshot.clock() if now is None else now
    terms = Terms(profile, weights, hint)
    ranked: list[ScoredModel] = []
    cooling_skips: list[SkippedModel] = []
    cooldowns = snapshot.cooldowns
    observed = snapshot.observed
    health = snapshot.health
    rests = getattr(observed, "rests", True)  # a store with no rest at all needs no per-model call
    wall = time.time()
    for entry in snapshot._candidates:
        model = entry.model
        cooling = 0.0
        if cooldowns and model.id in cooldowns:
            cooling = max(0.0, cooldowns[model.id] - now)
            if cooling and model.id != hinted_id:
                cooling_skips.append(SkippedModel(model, f"rate-limited: cooling down for {math.ceil(cooling)} s more"))
                continue
        resting = observed.unavailable(model.id, wall) if rests and observed is not None else None
        marked = health.get(model.id) if health else None
        if marked is not None:
            resting = (0.0, marked)
        if resting is not None and model.id != hinted_id:
            cooling_skips.append(SkippedModel(model, resting[1]))
            continue
        quality, quality_sum = terms.quality(entry.quality)
        context = terms.context(entry)
        price = terms.price(entry)
        availability = terms.availability(entry, cooling, resting[1] if resting else None)
        seen = observed.term(model.id) if observed is not None else terms.no_history
        hint_term = terms.hint if model.id == hinted_id else terms.no_hint
        total = quality_sum + context.value + price.value + availability.value + seen.value + hint_term.value
        ranked.append(ScoredModel(model, (*quality, context, price, availability, seen, hint_term), total))
    ranked.sort(key=_rank_key)
    skipped = (*snapshot._static_skips, *cooling_skips)
    chosen: ScoredModel | None
    if hinted is not None:
        chosen = next((s for s in ranked if s.model.id == hinted.id), None)
        if chosen is None:
            why = next(s.reason for s in skipped if s.model.id == hinted.id)
            reason = f"the hinted model {hinted.id} is unavailable: {why}"
        else:
            reason = f"forced by the hint {hint!r}"
    else:
        chosen = ranked[0] if ranked else None
        if chosen is not None:
            reason = f"highest total ({chosen.total}) of {len(ranked)} available model(s)"
        elif skipped:
            reasons = sorted({s.reason for s in skipped})
            reason = f"no model is available: {'; '.join(reasons)}"
        else:
            reason = "no model is available: the registry is empty"
    chain = tuple(fallback_chain(snapshot, chosen.id, now=now)) if chosen else ()
    return RoutingDecision(profile, hint, tuple(ranked), skipped, chosen, chain, reason)


def _rank_key(scored: ScoredModel) -> tuple[int, str]:
    return (-scored.total, scored.model.id)


def fallback_chain(snapshot: RoutingSnapshot, model_id: str, *, now: float | None = None) -> list[ModelProfile]:
    """The models to try in order: ``model_id`` itself, then its ``fallback`` ids, breadth first
    through their own fallbacks, skipping unknown, repeated and unavailable models."""
    first = snapshot.registry.get(model_id)
    if first is None:
        raise NexusError(f"no model has the id {model_id!r}", "Run `nexus-agents models` to list the ids")
    chain = [first]
    seen = {first.id}
    queue = list(first.fallback)
    while queue:
        next_id = queue.pop(0)
        if next_id in seen:
            continue
        seen.add(next_id)
        model = snapshot.registry.get(next_id)
        if model is None:
            continue
        queue.extend(model.fallback)
        if snapshot.unavailable_reason(next_id, now) is None:
            chain.append(model)
    return chain
