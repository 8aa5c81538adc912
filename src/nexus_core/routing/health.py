"""Health feeds routing: the doctor's last report as the models routing must leave out, and why.

:func:`unavailable_models` turns a :class:`~nexus_core.doctor.report.DoctorReport` into
``{model_id: reason}`` for a routing snapshot: every model of a provider whose gateway is down,
whose baseURL is unusable or whose key is missing or rejected; a model the gateway does not
serve; a model whose own chat probe failed. ``nexus-agents route --probe`` and the dashboard
both use it (through :func:`health_marks` and :func:`apply_health`), so they agree.

A later report replaces the marks wholesale: a check that passes again puts its models back.
It also clears what the run store observed before it (a model resting after "model not found"
or an unreachable gateway) for every model the report saw working.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from nexus_core.routing.crosscheck import declared_file, declared_models, not_served, overlay_hint

if TYPE_CHECKING:
    from nexus_core.doctor.report import Check, DoctorReport
    from nexus_core.routing.snapshot import RoutingSnapshot

__all__ = ["HealthMarks", "apply_health", "gateway_models_of", "health_marks", "unavailable_models"]

# A gateway check failing for one of these is the key's fault, not the gateway's.
_KEY_CAUSES = frozenset({"unauthorized", "forbidden"})
_KEY_CHECK_CAUSES = frozenset({"key_unset", "key_missing", "key_rejected"})
#: The rests a gateway that lists the model disproves; a rate limit needs an answer to be lifted.
LISTED_LIFTS = frozenset({"model_not_found", "connection"})


@dataclass(frozen=True)
class HealthMarks:
    """What one doctor report means for routing.

    ``unavailable``: model id → why it cannot be used. ``answered``: the models whose chat probe
    passed; ``listed``: those a reachable gateway lists. A rest the run store observed before
    ``checked_at`` (Unix seconds) is lifted for a listed model ("model not found", unreachable
    gateway) and, for one that answered, a rate limit's rest too.
    """

    unavailable: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    answered: frozenset[str] = frozenset()
    listed: frozenset[str] = frozenset()
    checked_at: float = 0.0


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _with_fix(what: str, check: Check) -> str:
    fix = f" (fix: {_short(check.fix, 160)})" if check.fix else ""
    return f"{what}: {_short(check.summary)}{fix}"


def _provider_reason(pid: str, checks: Mapping[str, Check]) -> str | None:
    """Why every model of provider ``pid`` is unavailable, or None."""
    base_url = checks.get(f"provider.{pid}.base_url")
    if base_url is not None and base_url.status == "fail":
        return _with_fix(f"{pid} has no usable baseURL", base_url)
    key = checks.get(f"provider.{pid}.api_key")
    if key is not None and key.status == "fail" and key.cause in _KEY_CHECK_CAUSES:
        what = "key rejected" if key.cause == "key_rejected" else "key missing"
        return _with_fix(f"{what} for {pid}", key)
    gateway = checks.get(f"gateway.{pid}")
    if gateway is not None and gateway.status == "fail":
        if gateway.cause in _KEY_CAUSES:
            return _with_fix(f"key rejected by {pid}'s gateway", gateway)
        return _with_fix(f"gateway down ({pid})", gateway)
    return None


def gateway_models_of(report: DoctorReport) -> dict[str, list[str]]:
    """Provider id → the model ids its gateway listed, for each gateway that answered."""
    return {
        check.id.removeprefix("gateway."): list(check.data["models"])
        for check in report.checks
        if check.id.startswith("gateway.") and check.status == "ok" and isinstance(check.data.get("models"), list)
    }


def health_marks(report: DoctorReport, snapshot: RoutingSnapshot, *, checked_at: float | None = None) -> HealthMarks:
    """The :class:`HealthMarks` of ``report`` for the models of ``snapshot``'s registry."""
    checks = {check.id: check for check in report.checks}
    served = gateway_models_of(report)
    probes: dict[str, Check] = {
        str(check.data.get("model")): check
        for check in report.checks
        if check.id.startswith("probe.chat.") and check.id.count(".") >= 3 and check.data.get("model")
    }
    config = snapshot.config
    unavailable: dict[str, str] = {}
    answered: set[str] = set()
    listed: set[str] = set()
    provider_reasons: dict[str, str | None] = {}
    for model in snapshot.registry.models:
        pid, key, name = model.provider_id, model.model_key, model.cli_model_name
        if not pid or not key or not name:
            continue
        if pid not in provider_reasons:
            provider_reasons[pid] = _provider_reason(pid, checks)
        reason = provider_reasons[pid]
        if reason is None and pid in served:
            api_id = declared_models(config, pid).get(key)
            if api_id is not None and api_id not in served[pid]:
                mismatch = not_served(
                    pid,
                    key,
                    api_id,
                    served[pid],
                    declared_in=declared_file(config, pid),
                    overlay=overlay_hint(config),
                )
                reason = f"not served by the gateway: {mismatch.sentence()}"
        probe = probes.get(name)
        if reason is None and probe is not None and probe.status == "fail":
            reason = _with_fix("its chat probe failed", probe)
        if reason is not None:
            unavailable[model.id] = reason
            continue
        if pid in served:
            listed.add(model.id)
        if probe is not None:
            answered.add(model.id)
    return HealthMarks(
        unavailable=MappingProxyType(unavailable),
        answered=frozenset(answered),
        listed=frozenset(listed | answered),
        checked_at=time.time() if checked_at is None else checked_at,
    )


def unavailable_models(report: DoctorReport, snapshot: RoutingSnapshot) -> dict[str, str]:
    """``{model_id: reason}``: the models ``report`` says routing must leave out (the one source for CLI and dashboard)."""
    return dict(health_marks(report, snapshot).unavailable)


def apply_health(snapshot: RoutingSnapshot, marks: HealthMarks | None) -> RoutingSnapshot:
    """``snapshot`` routed with ``marks``: the marked models unavailable with their reason, and the
    run store's rests from before the check lifted for the models it saw working."""
    if marks is None:
        return snapshot
    routed = snapshot.with_health(marks.unavailable)
    observed: Any = routed.observed
    lift = getattr(observed, "lifted", None)
    if lift is not None and marks.listed:
        lifted = lift(marks.listed, marks.checked_at, kinds=LISTED_LIFTS)
        if marks.answered:
            lifted = lifted.lifted(marks.answered, marks.checked_at)
        routed = routed.with_observed(lifted)
    return routed
