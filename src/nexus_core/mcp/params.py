"""The MCP tools' argument types: pydantic-checked, with the description each client shows."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from nexus_core.errors import NexusError
from nexus_core.opencode.transport import check_permissions
from nexus_core.routing.experts import Capability

__all__ = [
    "MAX_TASK_CHARS",
    "MAX_TIMEOUT_S",
    "Approve",
    "ExpertId",
    "ModelHint",
    "PreferredCapability",
    "RunId",
    "TaskText",
    "Thinking",
    "TimeoutSeconds",
    "Variant",
    "WorkDir",
]

MAX_TIMEOUT_S = 3600.0
MAX_TASK_CHARS = 400_000


def _permissions(names: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(sorted(check_permissions(names)))
    except NexusError as exc:
        raise ValueError(exc.sentence()) from None


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("it is empty (only whitespace); give the task in words")
    return text


TaskText = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=MAX_TASK_CHARS, description="the task, in plain words"),
    AfterValidator(_not_blank),
]
ModelHint = Annotated[
    str | None,
    Field(
        strict=True,
        description="a registry id, alias or CLI model name (e.g. opencode-custom-opus, sonnet, custom/claude-sonnet-4-5); forces that model",
    ),
]
PreferredCapability = Annotated[
    Capability | None, Field(description="the quality that matters most: reasoning, code, speed or cost")
]
ExpertId = Annotated[
    str | None, Field(strict=True, description="an expert id from list_experts; its system prompt goes before the task")
]
Variant = Annotated[
    str | None,
    Field(
        strict=True,
        description="reasoning effort: high, max or minimal (anything else is dropped, as OpenCode's allowlist demands)",
    ),
]
Thinking = Annotated[bool, Field(strict=True, description="ask OpenCode for the model's thinking blocks")]
WorkDir = Annotated[
    str | None, Field(strict=True, description="the directory the task runs in (default: the project directory)")
]
TimeoutSeconds = Annotated[
    float, Field(strict=True, gt=0, le=MAX_TIMEOUT_S, description="seconds for the whole run, fallbacks included")
]
Approve = Annotated[
    tuple[str, ...],
    Field(
        max_length=32,
        description='OpenCode permissions to allow `once` when the run asks (e.g. ["bash", "edit"], or ["all"]); any other question is rejected',
    ),
    AfterValidator(_permissions),
]


RunId = Annotated[str, Field(min_length=1, max_length=100, description="the run_id start_task (or list_runs) gave")]
