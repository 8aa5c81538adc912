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
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from nexus_core.config.loader import MergedConfig, load_config
from nexus_core.errors import NexusError
from nexus_core.opencode.locate import locate_opencode
from nexus_core.routing.crosscheck import declared_file, declared_models, not_served, overlay_hint, registry_mismatch
from nexus_core.routing.registry import ModelProfile, Registry, build_registry, overlay_paths

__all__ = [
    "DIMENSIONS",
    "TASK_KEYWORDS",
    "TERM_NAMES",
    "WEIGHTS",
    "Emphasis",
    "ObservedTerms",
    "RoutingDecision",
    "RoutingSnapshot",
    "RoutingWeights",
    "ScoreTerm",
    "ScoredModel",
    "SkippedModel",
    "TaskProfile",
    "build_snapshot",
    "fallback_chain",
    "profile_task",
    "resolve_hint",
    "route",
]

Dimension = Literal["reasoning", "code", "speed", "cost"]
DIMENSIONS: tuple[Dimension, ...] = ("reasoning", "code", "speed", "cost")
TaskSize = Literal["small", "medium", "large", "huge"]
TERM_NAMES = ("reasoning", "code", "speed", "cost", "context", "price", "availability", "observed", "hint")


class Emphasis(BaseModel):
    """How much each quality dimension matters (0–10)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    reasoning: float = Field(ge=0, le=10)
    code: float = Field(ge=0, le=10)
    speed: float = Field(ge=0, le=10)
    cost: float = Field(ge=0, le=10)


class RoutingWeights(BaseModel):
    """Every number routing uses, in one place. See the module docstring for the formula."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_emphasis: Emphasis = Emphasis(reasoning=4, code=4, speed=1, cost=1)
    keyword_emphasis: float = 2.0
    keyword_hits_counted: int = 3
    keyword_scan_chars: int = 65_536
    small_task_speed_emphasis: float = 2.0
    large_task_reasoning_emphasis: float = 2.0
    chars_per_token: int = 4
    small_task_max_tokens: int = 200
    medium_task_max_tokens: int = 2_000
    large_task_max_tokens: int = 20_000
    opencode_overhead_tokens: int = 12_000
    min_output_tokens: int = 1_000
    max_output_tokens: int = 16_000
    quality_points: int = 100
    context_room_factor: float = 2.0
    context_room_points: int = 20
    context_too_small_points: int = -1_000
    price_points_per_usd: float = 200.0
    price_points_cap: int = 200
    gateway_listed_points: int = 20
    hint_points: int = 10_000
    rate_limit_cooldown_s: float = 60.0


WEIGHTS = RoutingWeights()

# A keyword ending in "*" is a stem: it matches every word starting with it.
TASK_KEYWORDS: Mapping[Dimension, tuple[str, ...]] = MappingProxyType(
    {
        "reasoning": (
            "architect*",
            "design*",
            "prove",
            "proof",
            "reason*",
            "analy*",
            "tradeoff*",
            "trade-off*",
            "plan",
            "planning",
            "investigat*",
            "why",
            "complex*",
            "algorithm*",
            "concurren*",
            "deadlock*",
            "race",
            "security",
            "threat*",
            "vulnerab*",
            "optimi*",
            "diagnos*",
            "root-cause",
            "strategy",
        ),
        "code": (
            "implement*",
            "refactor*",
            "function*",
            "class",
            "classes",
            "method*",
            "bug*",
            "fix*",
            "test*",
            "code",
            "coding",
            "compile*",
            "python",
            "typescript",
            "javascript",
            "rust",
            "go",
            "java",
            "api",
            "endpoint*",
            "script*",
            "regex",
            "sql",
            "module*",
            "library",
            "cli",
            "unit",
            "debug*",
        ),
        "speed": (
            "quick*",
            "fast",
            "faster",
            "simple",
            "trivial",
            "typo*",
            "rename*",
            "small",
            "tiny",
            "format*",
            "lint*",
            "one-line*",
            "one-liner",
            "asap",
            "urgent*",
            "brief*",
        ),
        "cost": (
            "cheap*",
            "budget*",
            "bulk",
            "batch*",
            "cost*",
            "inexpensive",
            "economical",
            "thousands",
            "many",
            "summari*",
        ),
    }
)

_WORD_CHAR = r"a-z0-9+#_-"


def _compile_keywords() -> dict[Dimension, re.Pattern[str]]:
    """One pattern per dimension: whole words for exact keywords, word starts for stems."""
    out: dict[Dimension, re.Pattern[str]] = {}
    for dim, words in TASK_KEYWORDS.items():
        exact = "|".join(re.escape(w) for w in sorted((w for w in words if not w.endswith("*")), key=len, reverse=True))
        stems = "|".join(
            re.escape(w[:-1]) for w in sorted((w for w in words if w.endswith("*")), key=len, reverse=True)
        )
        out[dim] = re.compile(rf"(?<![{_WORD_CHAR}])(?:(?P<exact>{exact})(?![{_WORD_CHAR}])|(?P<stem>{stems}))")
    return out


_KEYWORDS = _compile_keywords()


class TaskProfile(BaseModel):
    """What a task needs, derived deterministically from its text and explicit preferences."""

    model_config = ConfigDict(frozen=True)

    characters: int
    token_estimate: int
    size: TaskSize
    keywords: dict[str, tuple[str, ...]] = Field(description="matched keywords per dimension, sorted")
    emphasis: dict[str, float] = Field(description="0–10 per dimension, after keywords, size and preferences")
    weights: dict[str, float] = Field(description="emphasis normalised to sum to 1")
    explicit: tuple[str, ...] = Field((), description="preferences the caller set explicitly")
    output_tokens: int
    context_tokens: int = Field(description="context window the task needs: prompt + OpenCode overhead + output")


def _size_of(tokens: int, w: RoutingWeights) -> TaskSize:
    if tokens <= w.small_task_max_tokens:
        return "small"
    if tokens <= w.medium_task_max_tokens:
        return "medium"
    if tokens <= w.large_task_max_tokens:
        return "large"
    return "huge"


def _check_preference(name: str, value: float | None, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high or math.isnan(value):
        raise NexusError(
            f"the {name} preference must be a number from 0 to {high:g}, not {value!r}",
            f"Pass {name} between 0 and {high:g}",
        )
    return float(value)


def profile_task(
    text: str,
    *,
    reasoning: float | None = None,
    code: float | None = None,
    speed: float | None = None,
    cost: float | None = None,
    context: int | None = None,
    weights: RoutingWeights = WEIGHTS,
) -> TaskProfile:
    """The :class:`TaskProfile` of ``text``. Preferences (0–10) replace the derived emphasis;
    ``context`` (tokens) replaces the derived context need."""
    prefs = {
        "reasoning": _check_preference("reasoning", reasoning, 10),
        "code": _check_preference("code", code, 10),
        "speed": _check_preference("speed", speed, 10),
        "cost": _check_preference("cost", cost, 10),
    }
    if context is not None and (isinstance(context, bool) or not isinstance(context, int) or context <= 0):
        raise NexusError(
            f"the context preference must be a positive number of tokens, not {context!r}",
            "Pass context as an integer such as 100000",
        )
    lowered = text[: weights.keyword_scan_chars].lower()
    matched: dict[str, tuple[str, ...]] = {}
    for dim, pattern in _KEYWORDS.items():
        hits = {m["exact"] or m["stem"] + "*" for m in pattern.finditer(lowered)}
        matched[dim] = tuple(sorted(hits))
    tokens = math.ceil(len(text) / weights.chars_per_token)
    size = _size_of(tokens, weights)
    emphasis: dict[str, float] = {}
    base = weights.base_emphasis
    for dim in DIMENSIONS:
        value = getattr(base, dim) + weights.keyword_emphasis * min(len(matched[dim]), weights.keyword_hits_counted)
        if dim == "speed" and size == "small" and not matched["reasoning"]:
            value += weights.small_task_speed_emphasis
        if dim == "reasoning" and size in ("large", "huge"):
            value += weights.large_task_reasoning_emphasis
        explicit = prefs[dim]
        emphasis[dim] = min(10.0, float(value)) if explicit is None else explicit
    total = sum(emphasis.values())
    normalised: dict[str, float] = {d: (emphasis[d] / total if total else 1 / len(DIMENSIONS)) for d in DIMENSIONS}
    output = min(weights.max_output_tokens, max(weights.min_output_tokens, tokens))
    return TaskProfile(
        characters=len(text),
        token_estimate=tokens,
        size=size,
        keywords=matched,
        emphasis=emphasis,
        weights=normalised,
        explicit=tuple(d for d in DIMENSIONS if prefs[d] is not None) + (("context",) if context is not None else ()),
        output_tokens=output,
        context_tokens=context if context is not None else tokens + weights.opencode_overhead_tokens + output,
    )


# ---------------------------------------------------------------- snapshot


class _Entry(NamedTuple):
    """Per-snapshot facts about one model that do not depend on the task (precomputed for speed)."""

    model: ModelProfile
    static_skip: str | None
    gateway_listed: bool | None
    quality: tuple[float, float, float, float]
    context_limit: int | None
    context_text: str
    price_in: float | None
    price_out: float | None
    price_text: str


@dataclass(frozen=True, eq=False)
class RoutingSnapshot:
    """Everything a routing decision depends on, frozen: registry, merged config and availability inputs.

    ``gateway_models`` maps a provider id to the model ids its gateway's ``/v1/models``
    listed (absent: not known). ``cooldowns`` maps a model id to the ``clock()`` time until
    which it cools down after a rate limit. ``observed`` gives each model's ``observed`` term and
    rate-limit rest (wall-clock time) from the run store; None when history is off. ``health`` maps a
    model id to why the last health check found it unusable. Derive changed snapshots with
    :meth:`with_cooldown`, :meth:`with_gateway_models`, :meth:`with_observed` and :meth:`with_health`;
    never mutate one.
    """

    registry: Registry
    config: MergedConfig
    opencode_path: str | None
    gateway_models: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    cooldowns: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    clock: Callable[[], float] = time.monotonic
    overlay_files: tuple[str, ...] = ()
    observed: ObservedTerms | None = None
    health: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def directory(self) -> str:
        return self.config.directory

    @property
    def base_urls(self) -> dict[str, str | None]:
        """Each config provider's ``options.baseURL`` (after substitution)."""
        return {pid: provider.base_url for pid, provider in self._providers.items()}

    @cached_property
    def _providers(self) -> dict[str, Any]:
        return self.config.providers

    @cached_property
    def _entries(self) -> tuple[_Entry, ...]:
        declared = {pid: frozenset(p.models) for pid, p in self._providers.items()}
        return tuple(self._entry(m, declared) for m in self.registry.models)

    @cached_property
    def _entry_by_id(self) -> dict[str, _Entry]:
        return {e.model.id: e for e in self._entries}

    @cached_property
    def _static_skips(self) -> tuple[SkippedModel, ...]:
        return tuple(SkippedModel(e.model, e.static_skip) for e in self._entries if e.static_skip)

    @cached_property
    def _candidates(self) -> tuple[_Entry, ...]:
        return tuple(e for e in self._entries if not e.static_skip)

    def _entry(self, model: ModelProfile, declared: Mapping[str, frozenset[str]]) -> _Entry:
        listed: bool | None = None
        pid, key = model.provider_id, model.model_key
        if pid is not None and key is not None and pid in self.gateway_models:
            listed = key in self.gateway_models[pid]
        reason: str | None = None
        if self.opencode_path is None:
            reason = "OpenCode was not found (install it and check `which opencode`, or set NEXUS_OPENCODE to its path)"
        elif model.cli_model_name is None:
            reason = 'the OpenCode config names no default model (set "model": "<provider>/<model>" in opencode.json)'
        elif (model.id != "opencode-default" and key not in declared.get(pid or "", ())) or listed is False:
            reason = self._mismatch(model)
        q, limit, pricing = model.quality, model.context_limit, model.pricing
        return _Entry(
            model=model,
            static_skip=reason,
            gateway_listed=listed,
            quality=(q.reasoning, q.code, q.speed, q.cost),
            context_limit=limit,
            context_text=f"{limit:,}" if limit is not None else "",
            price_in=pricing.input if pricing else None,
            price_out=pricing.output if pricing else None,
            price_text=f"at ${pricing.input:g} in / ${pricing.output:g} out per M tokens" if pricing else "",
        )

    def _mismatch(self, model: ModelProfile) -> str:
        """Why ``model`` cannot run as configured, worded as the doctor words it (one source: crosscheck)."""
        pid, key = model.provider_id or "", model.model_key or ""
        declared = declared_models(self.config, pid)
        listed = self.gateway_models.get(pid)
        served = sorted(listed) if listed is not None else None
        where, overlay = declared_file(self.config, pid), overlay_hint(self.config)
        found = (
            not_served(pid, key, declared[key], served, declared_in=where, overlay=overlay)
            if key in declared and served is not None
            else registry_mismatch(model, declared, served, declared_in=where, overlay=overlay)
        )
        return found.sentence() if found else f"{model.cli_model_name} cannot run as configured"

    def cooling_for(self, model_id: str, now: float | None = None) -> float:
        """Seconds of cool-down left for ``model_id`` (0 when none)."""
        until = self.cooldowns.get(model_id)
        if until is None:
            return 0.0
        left = until - (self.clock() if now is None else now)
        return left if left > 0 else 0.0

    def unavailable_reason(self, model_id: str, now: float | None = None) -> str | None:
        """Why ``model_id`` cannot be used now, or None when it can."""
        entry = self._entry_by_id.get(model_id)
        if entry is None:
            return f"no model has the id {model_id!r}"
        if entry.static_skip:
            return entry.static_skip
        if model_id in self.health:
            return self.health[model_id]
        left = self.cooling_for(model_id, now)
        if left:
            return f"rate-limited: cooling down for {math.ceil(left)} s more"
        rest = self.observed.unavailable(model_id, time.time()) if self.observed is not None else None
        return rest[1] if rest is not None else None

    def with_cooldown(self, model_id: str, seconds: float | None = None, now: float | None = None) -> RoutingSnapshot:
        """A copy in which ``model_id`` cools down for ``seconds`` (default: the rate-limit cool-down)."""
        start = self.clock() if now is None else now
        span = WEIGHTS.rate_limit_cooldown_s if seconds is None else seconds
        return self._keeping_facts(
            replace(self, cooldowns=MappingProxyType({**self.cooldowns, model_id: start + span}))
        )

    def with_observed(self, observed: ObservedTerms | None) -> RoutingSnapshot:
        """A copy with other observed terms (None: history off)."""
        return self._keeping_facts(replace(self, observed=observed))

    def with_health(self, unavailable: Mapping[str, str]) -> RoutingSnapshot:
        """A copy in which the last health check's ``{model_id: reason}`` are unavailable (the others not)."""
        return self._keeping_facts(replace(self, health=MappingProxyType(dict(unavailable))))

    def _keeping_facts(self, copy: RoutingSnapshot) -> RoutingSnapshot:
        for name in ("_entries", "_entry_by_id", "_static_skips", "_candidates"):
            if name in self.__dict__:  # cool-downs, history and health do not change them: reuse the precomputed facts
                copy.__dict__[name] = self.__dict__[name]
        return copy

    def precompute(self) -> RoutingSnapshot:
        """Compute the per-model facts every decision uses now (off the UI loop), not on first use."""
        _ = self._candidates, self._static_skips, self._entry_by_id
        return self

    def with_gateway_models(self, provider_id: str, model_ids: Iterable[str] | None) -> RoutingSnapshot:
        """A copy that knows (or, with None, forgets) the model ids the provider's gateway lists."""
        known = dict(self.gateway_models)
        if model_ids is None:
            known.pop(provider_id, None)
        else:
            known[provider_id] = frozenset(model_ids)
        return replace(self, gateway_models=MappingProxyType(known))


def build_snapshot(
    project_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    gateway_models: Mapping[str, Iterable[str]] | None = None,
    cooldowns: Mapping[str, float] | None = None,
    clock: Callable[[], float] = time.monotonic,
    history: bool | None = None,
) -> RoutingSnapshot:
    """Load the config and registry for ``project_dir`` and find ``opencode`` on ``env``'s PATH.

    ``history`` reads the run store's observed terms (default: unless ``NEXUS_NO_HISTORY`` is
    set in ``env``). Raises :class:`~nexus_core.config.loader.ConfigError` when a config file is broken.
    """
    env = os.environ if env is None else env
    config = load_config(project_dir, env)
    overlays = overlay_paths(config.directory, env)
    registry = build_registry(config, overlays)
    snapshot = RoutingSnapshot(
        registry=registry,
        config=config,
        opencode_path=locate_opencode(env),
        gateway_models=MappingProxyType({pid: frozenset(ids) for pid, ids in (gateway_models or {}).items()}),
        cooldowns=MappingProxyType(dict(cooldowns or {})),
        clock=clock,
        overlay_files=tuple(str(p) for p in overlays),
        observed=_observed(env, history),
    )
    return snapshot.precompute()


def _observed(env: Mapping[str, str], history: bool | None) -> ObservedTerms | None:
    # The store imports this module (for ScoreTerm): import it on use.
    from nexus_core.store.db import history_enabled
    from nexus_core.store.observed import load_observed

    if history is False or (history is None and not history_enabled(env)):
        return None
    return load_observed(env)


# ---------------------------------------------------------------- decision


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


class SkippedModel(NamedTuple):
    """A model that was not scored, and why."""

    model: ModelProfile
    reason: str

    @property
    def id(self) -> str:
        return self.model.id


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


class _Terms:
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

    def context(self, e: _Entry) -> ScoreTerm:
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

    def price(self, e: _Entry) -> ScoreTerm:
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

    def availability(self, e: _Entry, cooling: float, resting: str | None = None) -> ScoreTerm:
        if cooling:
            return ScoreTerm(
                "availability", 0, f"rate-limited, {math.ceil(cooling)} s of cool-down left; forced by the hint"
            )
        if resting:
            return ScoreTerm("availability", 0, f"{resting}; forced by the hint")
        return self.listed if e.gateway_listed else self.unlisted


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
    terms = _Terms(profile, weights, hint)
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
