"""The dashboard's calls into :mod:`nexus_core`: routing, runs, config watching.

Nothing here decides anything: routing, delegation, health checks, config watching and the
demo gateway are the core's. This module turns their results into the small frozen values
the widgets take (:class:`~nexus_tui.views.Breakdown`, ...), so widgets never import
the core's types and the core never learns about widgets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nexus_core.errors import NexusError
from nexus_tui.demo import DemoEnvironment, start_demo
from nexus_tui.state import (
    DashboardState,
    Health,
    _history_store,
    _latest_health,  # noqa: F401  (backend._latest_health, as before)
    _latest_observed,
    _routed,
    _stores,  # noqa: F401  (backend._stores, as before)
    config_error_sentence,
    health,
    shown_path,
    with_gateway_models,
)
from nexus_tui.views import Breakdown, RankedModel, RunRequest, RunStatus

# The config loader, routing, the planner and delegation (httpx, psutil), the doctor and the watcher
# (watchfiles) are imported when first used, after the first frame: up front they cost half a cold start.
if TYPE_CHECKING:
    from nexus_core.config.watch import ConfigWatcher, SnapshotUpdate
    from nexus_core.opencode.events import RunEvent
    from nexus_core.opencode.serve.server import ServerPool
    from nexus_core.opencode.serve.session import PermissionAsk
    from nexus_core.opencode.transport import ServeLease
    from nexus_core.routing.chain import Delegation
    from nexus_core.routing.snapshot import RoutingSnapshot
    from nexus_core.routing.workdir import WorkdirConfig
    from nexus_core.store.recorder import DelegationRecorder

__all__ = [
    "ConfigChange",
    "DashboardState",
    "DemoEnvironment",
    "Health",
    "RunHandle",
    "Servers",
    "change_of",
    "config_error_sentence",
    "config_paths",
    "health",
    "load_state",
    "open_watcher",
    "score",
    "shown_path",
    "start_demo",
    "start_follow_up",
    "start_run",
    "wait_all",
    "warm_up",
    "with_gateway_models",
]


async def load_state(project_dir: Path, env: Mapping[str, str]) -> DashboardState:
    """Load the config and registry (off the event loop); a broken file is a NexusError naming file:line:col."""
    from nexus_core.config.loader import ConfigError
    from nexus_core.routing.snapshot import build_snapshot

    try:
        snapshot = await asyncio.to_thread(build_snapshot, project_dir, env)
    except ConfigError as exc:
        raise NexusError(config_error_sentence(exc, project_dir, env, kept=False)) from exc
    return DashboardState(snapshot)


def config_paths(project_dir: Path, env: Mapping[str, str]) -> list[Path]:
    """Every file OpenCode would read for ``project_dir``, highest precedence last."""
    from nexus_core.config.loader import candidate_paths

    return candidate_paths(project_dir, env)


def score(state: DashboardState, task: str) -> Breakdown:
    """Score every model for ``task``: the ranked with their terms, the skipped with their reasons."""
    from nexus_core.routing.profile import profile_task
    from nexus_core.routing.score import route

    decision = route(_routed(state.snapshot), profile_task(task))
    ranked = [
        RankedModel(
            model_id=scored.id,
            cli_model_name=scored.model.cli_model_name,
            total=scored.total,
            terms=tuple((term.name, term.value) for term in scored.terms),
        )
        for scored in decision.ranked
    ]
    skipped = [
        RankedModel(model_id=s.id, cli_model_name=s.model.cli_model_name, total=0, terms=(), skipped=s.reason)
        for s in decision.skipped
    ]
    profile = decision.profile
    return Breakdown(
        task=task,
        ranked=(*ranked, *skipped),
        chosen=decision.chosen.id if decision.chosen else None,
        fallback_chain=tuple(model.id for model in decision.chain[1:]),
        profile=f"{profile.size} task · ~{profile.token_estimate:,} tokens",
        problem=None if decision.chosen else decision.reason,
    )


@dataclass(frozen=True)
class ConfigChange:
    """A config edit seen by the watcher: the new state and a one-line diff, or the error (old state kept)."""

    state: DashboardState | None = None
    summary: str = ""
    error: str | None = None
    only_availability: bool = False


class Servers:
    """The dashboard's ``opencode serve`` servers: one per working directory (and environment),
    shared by its runs and kept running between them, so the next run starts at once.

    A kept server ends on :meth:`aclose` (the app's exit), or after a config edit
    (:meth:`refresh`) once its last run is done, so the next run reads the new config.
    """

    def __init__(self) -> None:
        self._pools: dict[tuple[tuple[str, str], ...], ServerPool] = {}
        self._kept: dict[tuple[object, ...], ServeLease] = {}
        self._locks: dict[tuple[object, ...], asyncio.Lock] = {}
        self._closed = False

    def pool(self, env: Mapping[str, str]) -> ServerPool:
        """The pool of servers started with ``env``."""
        from nexus_core.opencode.serve.server import ServerPool

        key = tuple(sorted(env.items()))
        if key not in self._pools:
            self._pools[key] = ServerPool(env=dict(env))
        return self._pools[key]

    @staticmethod
    def _key(workdir: Path, env: Mapping[str, str]) -> tuple[object, ...]:
        return (str(workdir.resolve()), tuple(sorted(env.items())))

    def warm(self, workdir: Path, env: Mapping[str, str]) -> bool:
        """Whether a server for ``workdir`` is running already."""
        lease = self._kept.get(self._key(workdir, env))
        return lease is not None and lease.live

    def server_pid(self, workdir: Path, env: Mapping[str, str]) -> int | None:
        """The pid of the kept server for ``workdir`` (None when none runs)."""
        lease = self._kept.get(self._key(workdir, env))
        return lease.server_pid if lease is not None else None

    async def keep(self, workdir: Path, env: Mapping[str, str]) -> None:
        """Start the server for ``workdir`` if none runs, and keep it. A failure is left to the run to
        report (its attempt gets the same error, classified)."""
        from nexus_core.opencode.transport import ServeLease

        if self._closed:
            return
        key = self._key(workdir, env)
        async with self._locks.setdefault(key, asyncio.Lock()):
            lease = self._kept.get(key)
            if lease is None:
                lease = self._kept[key] = ServeLease(workdir, env=env, pool=self.pool(env))
            with contextlib.suppress(NexusError, OSError):
                await lease.client()

    async def refresh(self) -> None:
        """Let go of the kept servers: each ends with its last run; the next run starts a new one."""
        kept, self._kept = list(self._kept.values()), {}
        for lease in kept:
            await lease.aclose()

    async def aclose(self) -> None:
        """End every server (their whole process trees), in use or not."""
        self._closed = True
        await self.refresh()
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class RunHandle:
    """One delegation the dashboard started: its events, its cancel switch, and how it ended."""

    def __init__(
        self,
        delegation: Delegation,
        label: str,
        recorder: DelegationRecorder | None = None,
        env: Mapping[str, str] | None = None,
        directory: str = "",
        servers: Servers | None = None,
        workdir_config: WorkdirConfig | None = None,
    ) -> None:
        self.delegation = delegation
        self.label = label
        self.recorder = recorder
        self.workdir_config = workdir_config
        self.finished = False
        self.servers = servers
        self._env = env
        self._directory = directory
        self._done = asyncio.Event()
        self._cancel = asyncio.Event()

    @property
    def run_id(self) -> str | None:
        """The run store's id of this run (None when history is off)."""
        return self.recorder.run_id if self.recorder is not None else None

    @property
    def waits_for_server(self) -> bool:
        """Whether the run must wait for its OpenCode server to start (it shows as queued meanwhile)."""
        spec = self.delegation.spec
        if spec.transport != "serve" or spec.attach_url or self.servers is None or spec.workdir is None:
            return False
        return not self.servers.warm(spec.workdir, spec.env or {})

    @property
    def session_id(self) -> str | None:
        """The OpenCode session of the run's last attempt (a follow-up goes on in it); None on ``run``."""
        result = self.delegation.result
        return result.session_id if result is not None and self.delegation.spec.transport == "serve" else None

    @property
    def server_pid(self) -> int | None:
        """The pid of the kept server the run's session is on (the CPU and memory the view shows)."""
        spec = self.delegation.spec
        if self.servers is None or spec.transport != "serve" or spec.attach_url or spec.workdir is None:
            return None
        return self.servers.server_pid(spec.workdir, spec.env or {})

    async def _start_server(self) -> bool:
        """Start (or find) the run's server; False when the run was cancelled meanwhile."""
        spec = self.delegation.spec
        if self.servers is None or spec.transport != "serve" or spec.attach_url or spec.workdir is None:
            return not self._cancel.is_set()
        # Shielded: a server that is starting is kept for the next run even if this one is cancelled.
        starting = asyncio.ensure_future(self.servers.keep(spec.workdir, spec.env or {}))
        cancelled = asyncio.ensure_future(self._cancel.wait())
        try:
            await asyncio.wait({starting, cancelled}, return_when="FIRST_COMPLETED")
        finally:
            cancelled.cancel()
        return not self._cancel.is_set()

    async def events(self) -> AsyncIterator[RunEvent]:
        """The delegation's events as they come (the server starts first, if none runs), recorded."""
        from nexus_core.store.recorder import recorded

        try:
            if not await self._start_server():
                if self.recorder is not None:
                    self.recorder.finish(None, cancelled=True)
                return
            async with self.delegation:
                async for event in recorded(self.delegation.events(), self.recorder, self.delegation):
                    yield event
        finally:
            if self.recorder is not None:
                await asyncio.to_thread(self._observe)
            self.finished = True
            self._done.set()

    def _observe(self) -> None:
        from nexus_core.store.observed import load_observed

        assert self.recorder is not None
        self.recorder.handle.store.flush()
        _latest_observed[self._directory] = load_observed(self._env)

    def cancel(self) -> None:
        """Abort the run's session (on ``run``: end its process tree); the delegation tries no further model."""
        self._cancel.set()
        self.delegation.cancel()

    async def wait(self) -> None:
        """Until the run has ended and its processes are gone."""
        await self._done.wait()

    def rate_limited_models(self) -> list[str]:
        """Ids of the models whose attempt ended rate-limited (they cool down before the next routing)."""
        from nexus_core.opencode.events import FailureClass

        result = self.delegation.result
        attempts = result.attempts if result is not None else ()
        return [a.model_id for a in attempts if a.model_id and a.outcome.failure is FailureClass.RATE_LIMITED]

    @property
    def config_note(self) -> str | None:
        """One sentence when the working directory's config differs from the project's (said before the run)."""
        return self.workdir_config.difference if self.workdir_config is not None else None

    def verdict(self) -> tuple[RunStatus, str]:
        """The final status and a one-line verdict ("model not found" names the working directory's config)."""
        from nexus_core.opencode.events import FailureClass

        result = self.delegation.result
        if result is None:
            return RunStatus.CANCELLED, "ended before any model was tried"
        outcome = result.outcome
        if self.workdir_config is not None:
            outcome = self.workdir_config.explain(outcome, result.final.cli_model_name)
        if outcome.ok:
            return RunStatus.SUCCEEDED, f"{result.final.cli_model_name} answered in {result.duration_s:.1f} s"
        if outcome.failure is FailureClass.CANCELLED:
            return RunStatus.CANCELLED, "cancelled; its OpenCode processes were ended"
        return RunStatus.FAILED, outcome.sentence()


def start_run(
    state: DashboardState,
    request: RunRequest,
    env: Mapping[str, str],
    project_dir: Path,
    *,
    servers: Servers | None = None,
    ask: PermissionAsk | None = None,
) -> RunHandle:
    """Route ``request`` (its picked model as a hint) and prepare the delegation along the fallback chain.

    The run is a session on the working directory's server of ``servers`` (started when the
    handle's events are first read, if none runs); ``ask`` answers its permission questions.
    """
    from nexus_core.routing.chain import Delegation, DelegationSpec
    from nexus_core.routing.planner import plan_delegation

    workdir = request.workdir
    if workdir is not None and not workdir.is_absolute():
        workdir = project_dir / workdir
    if workdir is not None and not workdir.is_dir():
        raise NexusError(
            f"the working directory {workdir} does not exist", "Set an existing directory in the task options"
        )
    snapshot, where = _routed(state.snapshot), None
    if workdir is not None and workdir.resolve() != Path(state.snapshot.directory):
        snapshot, where = _workdir_routing(state, workdir, env)
    # The planner the CLI and the MCP tools use: a picked model goes first, its fallbacks after it.
    plan = plan_delegation(snapshot, request.task, request.model_id)
    decision = plan.decision
    spec = DelegationSpec(
        prompt=request.task,
        chain=plan.chain,
        variant=request.variant,
        thinking=request.thinking,
        workdir=workdir or project_dir,
        env=dict(env),
        transport=dashboard_transport(env),
    )
    recorder = _recorder(state, spec, env, project_dir, request.task, decision)
    delegation = Delegation(spec, pool=servers.pool(env) if servers is not None else None, ask=ask)
    return RunHandle(
        delegation, plan.first.id, recorder, env, state.snapshot.directory, servers=servers, workdir_config=where
    )


def dashboard_transport(env: Mapping[str, str]) -> Literal["serve", "run"]:
    """``serve`` (the default: live tokens, permission questions, follow-ups), or ``run`` when
    ``NEXUS_TRANSPORT=run`` asks for plain ``opencode run`` processes (finished parts only)."""
    return "run" if env.get("NEXUS_TRANSPORT", "").strip().lower() == "run" else "serve"


def _recorder(
    state: DashboardState, spec: object, env: Mapping[str, str], project_dir: Path, task: str, decision: object
) -> DelegationRecorder | None:
    store = _history_store(env) if state.snapshot.observed is not None else None
    if store is None:
        return None
    from nexus_core.store.recorder import DelegationRecorder

    return DelegationRecorder.begin(store, spec, decision=decision, source="dashboard", project=project_dir, task=task)


def start_follow_up(
    state: DashboardState,
    previous: RunHandle,
    text: str,
    project_dir: Path,
    *,
    servers: Servers | None = None,
    ask: PermissionAsk | None = None,
) -> RunHandle:
    """``text`` sent into the OpenCode session of ``previous`` (finished), on the model that answered it."""
    from nexus_core.routing.chain import Delegation

    session_id = previous.session_id
    result = previous.delegation.result
    if session_id is None or result is None:
        raise NexusError("that run has no OpenCode session to continue", "Start a new run from the task box")
    spec = previous.delegation.spec
    model = next((m for m in spec.chain if m.id == result.final.model_id), None)
    if model is None:
        raise NexusError(f"the model {result.final.cli_model_name} of that run is gone", "Start a new run instead")
    follow = spec.model_copy(update={"prompt": text, "chain": (model,), "session_id": session_id})
    env = follow.env or {}
    recorder = _recorder(state, follow, env, project_dir, text, None)
    delegation = Delegation(follow, pool=servers.pool(env) if servers is not None else None, ask=ask)
    return RunHandle(
        delegation,
        model.id,
        recorder,
        env,
        previous._directory,
        servers=servers,
        workdir_config=previous.workdir_config,
    )


def start_continuation(
    state: DashboardState,
    session_id: str,
    model_id: str | None,
    text: str,
    env: Mapping[str, str],
    project_dir: Path,
    *,
    servers: Servers | None = None,
    ask: PermissionAsk | None = None,
) -> RunHandle:
    """``text`` sent into a past run's OpenCode session ``session_id`` (from the run store), on its model."""
    from nexus_core.routing.chain import Delegation, DelegationSpec

    model = state.registry.find(model_id) if model_id else None
    if model is None or model.cli_model_name is None:
        raise NexusError(
            f"the model {model_id or '(unknown)'} of that run is not in the registry now",
            "Press R to run the task again, or r to pick a model",
        )
    spec = DelegationSpec(prompt=text, chain=(model,), workdir=project_dir, env=dict(env), session_id=session_id)
    recorder = _recorder(state, spec, env, project_dir, text, None)
    delegation = Delegation(spec, pool=servers.pool(env) if servers is not None else None, ask=ask)
    return RunHandle(delegation, model.id, recorder, env, state.snapshot.directory, servers=servers)


def _workdir_routing(
    state: DashboardState, workdir: Path, env: Mapping[str, str]
) -> tuple[RoutingSnapshot, WorkdirConfig | None]:
    """Routing for a run in ``workdir``: the config OpenCode reads there, and how it differs from the project's."""
    from nexus_core.config.loader import ConfigError
    from nexus_core.routing.snapshot import build_snapshot
    from nexus_core.routing.workdir import compare_workdir

    try:
        snapshot = build_snapshot(workdir, env, history=state.snapshot.observed is not None)
    except ConfigError as exc:
        raise NexusError(config_error_sentence(exc, Path(state.snapshot.directory), env, kept=False)) from exc
    where = compare_workdir(state.snapshot.config, snapshot.config)
    if where.difference is None:
        return _routed(state.snapshot), None  # the same config: the project's state, health and all
    return snapshot, where


async def wait_all(handles: Iterable[RunHandle], timeout: float = 15.0) -> None:
    """Until every run in ``handles`` has ended (bounded: their trees get SIGKILL well within it)."""
    pending = [handle.wait() for handle in handles if not handle.finished]
    if pending:
        await asyncio.wait_for(asyncio.gather(*pending), timeout)


def warm_up() -> None:
    """Import what the first run needs, once the first frame is drawn, so that Enter spawns at once."""
    import nexus_core.routing.chain
    import nexus_core.routing.planner  # noqa: F401


def open_watcher(project_dir: Path, env: Mapping[str, str]) -> ConfigWatcher:
    """A watcher over every config file of ``project_dir`` (start it to get the first snapshot)."""
    from nexus_core.config.watch import ConfigWatcher

    return ConfigWatcher(project_dir, env)


def change_of(update: SnapshotUpdate, project_dir: Path, env: Mapping[str, str]) -> ConfigChange:
    """A watcher update as the dashboard shows it: the new state and its diff, or the error."""
    if update.error is not None:
        return ConfigChange(error=config_error_sentence(update.error, project_dir, env))
    assert update.snapshot is not None
    diff = update.diff
    summary = diff.summary()
    if update.recovered:
        summary = f"fixed; {summary}"
    quiet = not (diff.added or diff.removed or diff.changed or diff.gateways or diff.config_changed or update.recovered)
    return ConfigChange(state=DashboardState(update.snapshot), summary=summary, only_availability=quiet)
