"""The project an MCP server serves, the delegation depth it may start models at, and routing for its tools."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from mcp.server.mcpserver.exceptions import ToolError

from nexus_core.config.loader import ConfigError, load_config
from nexus_core.errors import NexusError
from nexus_core.mcp.jobs import JobManager
from nexus_core.opencode.attempt import DEPTH_VAR
from nexus_core.routing.experts import EXPERTS, Capability, Expert, find_expert
from nexus_core.routing.planner import DelegationPlan, plan_delegation
from nexus_core.routing.registry import Registry, build_registry, overlay_paths
from nexus_core.routing.score import RoutingDecision, ScoredModel
from nexus_core.routing.snapshot import RoutingSnapshot, build_snapshot

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEPTH_VAR",
    "MAX_DEPTH_VAR",
    "Project",
    "chosen_model",
    "decide",
    "delegation_depth",
    "expert_named",
]

MAX_DEPTH_VAR = "NEXUS_MAX_DELEGATION_DEPTH"
DEFAULT_MAX_DEPTH = 2


def delegation_depth(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The current delegation depth and its maximum, from the environment (bad values count as 0 / default)."""
    env = os.environ if env is None else env

    def read(name: str, default: int) -> int:
        try:
            return max(0, int(env.get(name, "") or default))
        except ValueError:
            return default

    return read(DEPTH_VAR, 0), read(MAX_DEPTH_VAR, DEFAULT_MAX_DEPTH)


class Project:
    """The project the server serves: its directory and environment, read afresh for every call.

    What the config cannot say comes from the run store, where every delegation is recorded
    (``jobs.store``): routing's ``observed`` term, and the rest a rate-limited model takes.
    """

    def __init__(self, directory: Path, env: Mapping[str, str]) -> None:
        self.directory = directory
        self.env = dict(env)
        self.jobs = JobManager(directory, self.env)

    def registry(self) -> Registry:
        """The model registry from the config as it is now (``ToolError`` when it does not parse)."""
        try:
            config = load_config(self.directory, self.env)
        except ConfigError as exc:
            raise ToolError(exc.sentence()) from None
        return build_registry(config, overlay_paths(self.directory, self.env))

    def snapshot(self) -> RoutingSnapshot:
        """Routing's view of the project now (``ToolError`` when the config does not parse)."""
        try:
            return build_snapshot(self.directory, self.env)
        except ConfigError as exc:
            raise ToolError(exc.sentence()) from None

    def workdir(self, work_dir: str | None) -> Path:
        """The directory a task runs in: ``work_dir`` (relative to the project) or the project itself."""
        if not work_dir:
            return self.directory
        path = Path(work_dir).expanduser()
        path = path if path.is_absolute() else self.directory / path
        if not path.is_dir():
            raise ToolError(
                f"workDir {work_dir!r} is not a directory ({path}). Pass an existing directory, or leave it out to use {self.directory}."
            )
        return path.resolve()

    def check_depth(self, tool: str) -> None:
        """``ToolError`` when starting another model from here could recurse (see :func:`delegation_depth`)."""
        depth, limit = delegation_depth(self.env)
        if depth >= limit:
            raise ToolError(
                f"{tool} refused: this nexus server already runs {depth} delegation(s) deep "
                f"({DEPTH_VAR}={depth}, the maximum is {limit}), and starting another model from here could recurse "
                f"without end. Do the task in this session instead, or raise {MAX_DEPTH_VAR} where nexus was started."
            )


def expert_named(expert_id: str | None) -> Expert | None:
    """The expert with this id (None for none); ``ToolError`` naming the ids there are when unknown."""
    if not expert_id:
        return None
    found = find_expert(expert_id)
    if found is None:
        ids = ", ".join(e.id for e in EXPERTS)
        raise ToolError(f"No expert has the id {expert_id!r}. Use one of: {ids} (list_experts describes them).")
    return found


def decide(
    project: Project, task: str, hint: str | None, capability: Capability | None, expert: Expert | None
) -> tuple[RoutingSnapshot, DelegationPlan]:
    """Plan ``task`` with the core's planner, as the CLI does (``hint`` forces a model, a
    ``provider/model`` the registry does not know included; the capability, or the expert's, is
    emphasised). ``ToolError`` with the planner's sentence when it refuses."""
    wanted = capability or (expert.preferred_capability if expert else None)
    snapshot = project.snapshot()
    try:
        return snapshot, plan_delegation(snapshot, task, hint, capability=wanted)
    except NexusError as exc:
        raise ToolError(exc.sentence()) from None


def chosen_model(decision: RoutingDecision) -> ScoredModel:
    """The model routing chose; ``ToolError`` saying why when there is none."""
    try:
        return decision.chosen_or_raise()
    except NexusError as exc:
        raise ToolError(exc.sentence()) from None
