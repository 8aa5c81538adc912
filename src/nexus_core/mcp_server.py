"""The nexus-agents MCP server: nexus's tools inside an OpenCode session, over stdio.

``nexus-agents --mode=server`` (or ``python -m nexus_core --mode=server``) runs it; OpenCode
starts it from the ``mcp.nexus-agents`` entry that ``nexus-agents setup`` writes, in the
project directory, and names its tools ``nexus-agents_<tool>``.

Every tool validates its arguments with pydantic; any failure comes back as an MCP tool
error with one clear sentence, and the server keeps serving. Only the protocol goes to
stdout (the SDK moves file descriptor 1 to stderr while it serves); logs go to stderr.

Delegation depth: an ``opencode run`` started by nexus carries ``NEXUS_DELEGATION_DEPTH`` set
to one more than its parent's, and OpenCode passes it on to this server. At
``NEXUS_MAX_DELEGATION_DEPTH`` (default 2) or deeper, the tools that would start another
model refuse with a tool error, so nexus → OpenCode → nexus cannot recurse without end.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nexus_core import __version__
from nexus_core.errors import NexusError
from nexus_core.experts import EXPERTS, Expert
from nexus_core.opencode_config import ConfigError, MergedConfig, load_config
from nexus_core.registry import ModelProfile, Registry, build_registry, overlay_paths

__all__ = [
    "DEPTH_VAR",
    "MAX_DEPTH_VAR",
    "DEFAULT_MAX_DEPTH",
    "build_server",
    "delegation_depth",
    "serve",
]

SERVER_NAME = "nexus-agents"
DEPTH_VAR = "NEXUS_DELEGATION_DEPTH"
MAX_DEPTH_VAR = "NEXUS_MAX_DELEGATION_DEPTH"
DEFAULT_MAX_DEPTH = 2

INSTRUCTIONS = (
    "nexus routes coding tasks to the best-fitting model behind OpenCode (including a custom "
    "OpenAI-compatible gateway) and runs them with fallbacks. Use route_task to see which model "
    "fits a task and why, orchestrate to run a task, list_experts for expert roles, consensus_vote "
    "to ask several models the same question, and doctor when a model cannot be reached."
)


def delegation_depth(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The current delegation depth and its maximum, from the environment (bad values count as 0 / default)."""
    env = os.environ if env is None else env

    def read(name: str, default: int) -> int:
        try:
            return max(0, int(env.get(name, "") or default))
        except ValueError:
            return default

    return read(DEPTH_VAR, 0), read(MAX_DEPTH_VAR, DEFAULT_MAX_DEPTH)


class ExpertList(BaseModel):
    """The answer of ``list_experts``."""

    experts: list[Expert]
    usage: str = "pass an expert's id as `expert` to orchestrate"


class ModelList(BaseModel):
    """The answer of ``list_models``."""

    models: list[ModelProfile]
    problems: list[str]


class _Project:
    """The project the server serves: its directory and environment, read afresh for every call."""

    def __init__(self, directory: Path, env: Mapping[str, str]) -> None:
        self.directory = directory
        self.env = dict(env)

    def load(self) -> tuple[MergedConfig, Registry]:
        try:
            config = load_config(self.directory, self.env)
        except ConfigError as exc:
            raise ToolError(exc.sentence()) from None
        return config, build_registry(config, overlay_paths(self.directory, self.env))


def _validation_sentence(tool: str, error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return f"Invalid arguments for {tool}: {'; '.join(parts)}. Fix them and call {tool} again."


class NexusMCPServer(MCPServer):
    """MCPServer whose argument-validation errors are one readable sentence, without pydantic's links."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            known = set(tool.parameters.get("properties", {}))
            unknown = sorted(set(arguments) - known)
            if unknown:
                expected = ", ".join(sorted(known)) or "no arguments"
                raise ToolError(f"Unknown argument {', '.join(map(repr, unknown))} for {name} (it takes: {expected}). Fix the call and try again.")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(_validation_sentence(name, exc.__cause__)) from exc.__cause__
            raise


def build_server(directory: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> MCPServer:
    """The MCP server with every nexus tool, for the project in ``directory`` (default: the cwd)."""
    project = _Project(Path(directory or os.getcwd()).resolve(), os.environ if env is None else env)
    server = NexusMCPServer(name=SERVER_NAME, version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(description="The expert roles nexus offers (code, review, security, architecture, docs, test, debug): each a system prompt and the capability routing favours for it. Use an id as `expert` in orchestrate.")
    def list_experts() -> ExpertList:
        return ExpertList(experts=list(EXPERTS))

    @server.tool(description="The model registry: built-in profiles, every model the OpenCode config declares, and the user overlay; quality scores, limits, fallbacks.")
    def list_models() -> ModelList:
        _, registry = project.load()
        return ModelList(models=list(registry.models), problems=[p.sentence() for p in registry.problems])

    return server


def serve() -> int:
    """Run the MCP server on stdio until the client closes it; the exit code."""
    try:
        build_server().run("stdio")
    except KeyboardInterrupt:
        return 130
    return 0
