"""The routing snapshot: everything a decision depends on, frozen (registry, merged config,
availability inputs), with the per-model facts precomputed; :func:`build_snapshot` loads one."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any, NamedTuple

from nexus_core.config.loader import MergedConfig, load_config
from nexus_core.opencode.locate import locate_opencode
from nexus_core.routing.crosscheck import declared_file, declared_models, not_served, overlay_hint, registry_mismatch
from nexus_core.routing.registry import ModelProfile, Registry, build_registry, overlay_paths
from nexus_core.routing.terms import ModelFacts, ObservedTerms
from nexus_core.routing.weights import WEIGHTS

__all__ = ["RoutingSnapshot", "SkippedModel", "build_snapshot"]


class SkippedModel(NamedTuple):
    """A model that was not scored, and why."""

    model: ModelProfile
    reason: str

    @property
    def id(self) -> str:
        return self.model.id


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
    def _entries(self) -> tuple[ModelFacts, ...]:
        declared = {pid: frozenset(p.models) for pid, p in self._providers.items()}
        return tuple(self._entry(m, declared) for m in self.registry.models)

    @cached_property
    def _entry_by_id(self) -> dict[str, ModelFacts]:
        return {e.model.id: e for e in self._entries}

    @cached_property
    def _static_skips(self) -> tuple[SkippedModel, ...]:
        return tuple(SkippedModel(e.model, e.static_skip) for e in self._entries if e.static_skip)

    @cached_property
    def _candidates(self) -> tuple[ModelFacts, ...]:
        return tuple(e for e in self._entries if not e.static_skip)

    def _entry(self, model: ModelProfile, declared: Mapping[str, frozenset[str]]) -> ModelFacts:
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
        return ModelFacts(
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
    # Imported on use: only a snapshot with history reads the run store.
    from nexus_core.store.db import history_enabled
    from nexus_core.store.observed import load_observed

    if history is False or (history is None and not history_enabled(env)):
        return None
    return load_observed(env)
