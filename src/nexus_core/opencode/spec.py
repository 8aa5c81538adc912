"""What one attempt is given (:class:`AttemptSpec`) and what it gives back (:class:`AttemptResult`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from nexus_core.opencode.defaults import DEFAULT_MAX_GATEWAY_RETRIES, DEFAULT_STALL_TIMEOUT_S, DEFAULT_TIMEOUT_S
from nexus_core.opencode.events import Outcome, RunEvent

__all__ = [
    "DEFAULT_MAX_GATEWAY_RETRIES",
    "DEFAULT_STALL_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "AttemptResult",
    "AttemptSpec",
]


class AttemptSpec(BaseModel):
    """Everything one attempt needs. Timeouts are in seconds."""

    model_config = ConfigDict(frozen=True)

    cli_model_name: str
    prompt: str
    model_id: str | None = None
    variant: str | None = None
    thinking: bool = False
    workdir: Path | None = None
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0)
    stall_timeout_s: float = Field(DEFAULT_STALL_TIMEOUT_S, gt=0)
    max_gateway_retries: int = Field(DEFAULT_MAX_GATEWAY_RETRIES, ge=0)
    stats_interval_s: float | None = Field(1.0, gt=0)
    env: dict[str, str] | None = Field(None, description="base environment; None: this process's")
    opencode: str | None = Field(None, description="OpenCode executable; None: find_opencode(env)")


class AttemptResult(BaseModel):
    """One finished attempt: its events, its answer, its outcome and a redacted stderr tail."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    cli_model_name: str
    model_id: str | None = None
    argv: tuple[str, ...] = ()
    outcome: Outcome
    text: str = ""
    events: tuple[RunEvent, ...] = ()
    stderr_tail: str = ""
    session_id: str | None = Field(None, description="OpenCode's session (a follow-up continues it)")
