"""The dashboard's routing state and health: the snapshot in force, what runs observed and what
the latest health check marked, and the doctor run as the health panel draws it.

:mod:`nexus_tui.backend` re-exports every name here; the app calls them as ``backend.X``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nexus_tui.views import HealthCheck, HealthReport

if TYPE_CHECKING:
    from nexus_core.config.loader import ConfigError
    from nexus_core.routing.health import HealthMarks
    from nexus_core.routing.registry import Registry
    from nexus_core.routing.snapshot import RoutingSnapshot
    from nexus_core.routing.terms import ObservedTerms
    from nexus_core.store.runs import RunStore

__all__ = [
    "DashboardState",
    "Health",
    "config_error_sentence",
    "health",
    "shown_path",
    "with_gateway_models",
]


@dataclass(frozen=True)
class DashboardState:
    """The routing snapshot in force, and what the registry table needs from it."""

    snapshot: RoutingSnapshot

    @property
    def registry(self) -> Registry:
        return self.snapshot.registry

    @property
    def unavailable(self) -> dict[str, str]:
        """Model id → why it cannot be used now (absent: available): config, health, run outcomes."""
        routed = _routed(self.snapshot)
        reasons = {model.id: routed.unavailable_reason(model.id) for model in self.registry.models}
        return {model_id: reason for model_id, reason in reasons.items() if reason}

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(problem.sentence() for problem in self.registry.problems)


# The run store of each state directory (one per dashboard, normally), and, per project directory,
# what it observed after the latest run ended: routing uses it at once, not at the next config reload.
_stores: dict[str, RunStore | None] = {}
_latest_observed: dict[str, ObservedTerms] = {}
# Per project directory, what the latest health check means for routing (a later one replaces it).
_latest_health: dict[str, HealthMarks] = {}


def _history_store(env: Mapping[str, str]) -> RunStore | None:
    from nexus_core.store.db import state_dir
    from nexus_core.store.recorder import history_store

    key = str(state_dir(env))
    if key not in _stores:
        _stores[key] = history_store(env, quiet=True)
    return _stores[key]


def _routed(snapshot: RoutingSnapshot) -> RoutingSnapshot:
    """``snapshot`` with the newest observed terms (history off stays off) and the latest health marks."""
    latest = _latest_observed.get(snapshot.directory)
    if snapshot.observed is not None and latest is not None:
        snapshot = snapshot.with_observed(latest)
    marks = _latest_health.get(snapshot.directory)
    if marks is None:
        return snapshot
    from nexus_core.routing.health import apply_health

    return apply_health(snapshot, marks)


def shown_path(path: str | Path, project_dir: Path, env: Mapping[str, str]) -> str:
    """``path`` as the user reads it best: relative inside the project, ``~/…`` inside their home."""
    target = Path(path)
    home = env.get("HOME")
    for base, prefix in ((project_dir, ""), (Path(home) if home else None, "~/")):
        if base is not None and target.is_relative_to(base):
            return f"{prefix}{target.relative_to(base)}"
    return str(target)


def config_error_sentence(error: ConfigError, project_dir: Path, env: Mapping[str, str], *, kept: bool = True) -> str:
    """A broken config file as one line: ``file:line:col: what``, and whether the last good state is kept."""
    where = shown_path(error.path, project_dir, env)
    if error.line is not None:
        where = f"{where}:{error.line}:{error.column}"
    then = "the last good config stays in force" if kept else "nothing is loaded until it parses"
    return f"{where}: {error.message}. Fix the file and save it again; {then}."


@dataclass(frozen=True)
class Health:
    """A doctor run as the panel draws it, and the model ids each reachable gateway listed."""

    report: HealthReport
    gateway_models: dict[str, list[str]]


async def health(
    project_dir: Path, env: Mapping[str, str], state: DashboardState | None = None, *, probe: bool = False
) -> Health:
    """Doctor's checks for ``project_dir`` (bounded: a dead gateway gets its verdict in seconds), with
    ``probe`` also a chat probe of every model and an ``opencode run`` smoke.

    With the routing ``state``, the result marks models unavailable for routing (replacing the
    previous check's marks: a check that passes again puts its models back).
    """
    from nexus_core.doctor.checks import run_doctor
    from nexus_core.routing.health import gateway_models_of, health_marks

    report = await run_doctor(project_dir, env, probe=probe)
    gateway_models = gateway_models_of(report)
    unavailable: tuple[tuple[str, str], ...] = ()
    if state is not None:
        snapshot = state.snapshot
        for provider_id, model_ids in gateway_models.items():
            snapshot = snapshot.with_gateway_models(provider_id, model_ids)
        marks = health_marks(report, snapshot)
        _latest_health[state.snapshot.directory] = marks
        unavailable = tuple(sorted(marks.unavailable.items()))
    drawn = HealthReport(
        checks=tuple(
            HealthCheck(
                check_id=check.id,
                status=check.status,
                summary=check.summary,
                fix=check.fix,
                duration_ms=check.duration_ms,
                detail=check.detail,
                title=check.title,
                cause=check.cause,
            )
            for check in report.checks
        ),
        gateway_latency_ms=report.gateway_latency_ms,
        unavailable=unavailable,
        probed=probe,
    )
    return Health(report=drawn, gateway_models=gateway_models)


def with_gateway_models(state: DashboardState, gateway_models: Mapping[str, Iterable[str]]) -> DashboardState:
    """``state`` knowing the model ids each reachable gateway listed (when no watcher carries them)."""
    snapshot = state.snapshot
    for provider_id, model_ids in gateway_models.items():
        snapshot = snapshot.with_gateway_models(provider_id, model_ids)
    return DashboardState(snapshot)
