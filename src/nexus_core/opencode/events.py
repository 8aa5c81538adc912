"""Typed events of a delegation, and the classified outcome of an attempt.

``opencode run --format json`` prints one JSON object per line: ``step_start``, ``text``,
``reasoning`` (only with ``--thinking``), ``tool_use``, ``step_finish`` and ``error``, each
carrying OpenCode's ``part`` (or ``error``). :func:`parse_line` turns a line into one of the
models below; an unknown type is kept as :class:`Raw` and a line that is not JSON as
:class:`OutputLine`, so nothing OpenCode prints is lost and nothing crashes the reader.

The adapter adds its own events beside OpenCode's: :class:`ProcessStats` (CPU and memory of
the run's process tree), :class:`GatewayRetrying` (OpenCode is silently retrying the
gateway), :class:`AttemptStarted` / :class:`AttemptFinished` (one per model tried) and
:class:`FallbackTaken`. Every event has a ``kind`` (the discriminator of :data:`RunEvent`),
the ``attempt`` number it belongs to (1 for the first model) and ``at``, seconds since the
attempt started.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from nexus_core.secrets import is_secret_key

__all__ = [
    "AttemptFinished",
    "AttemptStarted",
    "ErrorEvent",
    "FailureClass",
    "FallbackTaken",
    "GatewayRetrying",
    "Outcome",
    "OutputLine",
    "ProcessStats",
    "Raw",
    "Reasoning",
    "RunEvent",
    "StepFinish",
    "StepStart",
    "Text",
    "TokenUsage",
    "ToolUse",
    "as_object",
    "event_adapter",
    "parse_line",
]

# A tool's output can be a whole file; events keep its head only.
TOOL_OUTPUT_LIMIT = 4_000
RAW_LINE_LIMIT = 16_000
# An error body is read for its meaning only; the rest of a long one says nothing more.
_RESPONSE_BODY_CHARS = 16_000
_UNKEPT_HEADERS = frozenset({"set-cookie", "cookie"})


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    attempt: int = 1
    at: float = 0.0


class StepStart(_Event):
    """The model started a step (one request to the gateway)."""

    kind: Literal["step_start"] = "step_start"
    session_id: str | None = None


class Text(_Event):
    """A finished block of the answer."""

    kind: Literal["text"] = "text"
    text: str


class Reasoning(_Event):
    """A finished thinking block (OpenCode prints them only with ``--thinking``)."""

    kind: Literal["reasoning"] = "reasoning"
    text: str


class ToolUse(_Event):
    """A tool call that finished (``completed``) or failed (``error``)."""

    kind: Literal["tool_use"] = "tool_use"
    tool: str
    status: str
    title: str = ""
    input: dict[str, Any] = Field(default_factory=dict)
    output: str | None = Field(None, description=f"the first {TOOL_OUTPUT_LIMIT} characters")
    error: str | None = None


class TokenUsage(BaseModel):
    """Tokens one step used, as OpenCode reports them."""

    model_config = ConfigDict(frozen=True)
    input: int = 0
    output: int = 0
    reasoning: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.reasoning


class StepFinish(_Event):
    """A step ended. ``reason`` is ``stop`` when the model is done, ``tool-calls`` when it goes on."""

    kind: Literal["step_finish"] = "step_finish"
    reason: str | None = None
    tokens: TokenUsage = TokenUsage()
    cost: float = 0.0


class ErrorEvent(_Event):
    """An error OpenCode reported for the session (it still exits 0)."""

    kind: Literal["error"] = "error"
    name: str
    message: str
    status_code: int | None = None
    retryable: bool | None = None
    #: The gateway's answer when OpenCode kept it (``data.responseBody`` / ``responseHeaders``), cut short.
    response_body: str | None = None
    response_headers: dict[str, str] | None = None


class Raw(_Event):
    """A JSON event of a type this version does not know, kept as it came."""

    kind: Literal["raw"] = "raw"
    type: str
    data: dict[str, Any] = Field(default_factory=dict)


class OutputLine(_Event):
    """A stdout line that is not a JSON event."""

    kind: Literal["output"] = "output"
    line: str


class ProcessStats(_Event):
    """A sample of the run's whole process tree."""

    kind: Literal["stats"] = "stats"
    cpu_percent: float
    rss_bytes: int
    pids: tuple[int, ...]


class GatewayRetrying(_Event):
    """OpenCode hit a retryable gateway failure (5xx, 429, dropped connection) and is retrying."""

    kind: Literal["retrying"] = "retrying"
    retry: int = Field(description="1 for the first retry")
    message: str


class FailureClass(StrEnum):
    """Why an attempt failed. Values are stable: scripts and the MCP server use them."""

    OPENCODE_NOT_FOUND = "opencode_not_found"
    CONFIG_INVALID = "config_invalid"
    AUTH = "auth"
    MODEL_NOT_FOUND = "model_not_found"
    BAD_REQUEST = "bad_request"
    CONNECTION = "connection"
    RATE_LIMITED = "rate_limited"
    GATEWAY_ERROR = "gateway_error"
    STALLED = "stalled"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    CUT_STREAM = "cut_stream"
    PERMISSION = "permission"
    FAILED = "failed"


class Outcome(BaseModel):
    """How an attempt ended: ``failure`` is None on success; ``message`` and ``fix`` are one line each."""

    model_config = ConfigDict(frozen=True)
    failure: FailureClass | None = None
    message: str
    fix: str = ""
    exit_code: int | None = None
    duration_s: float = 0.0
    status_code: int | None = None
    #: Model requests that failed at the gateway during the attempt (OpenCode's silent retries included).
    failed_requests: int = 0

    @property
    def ok(self) -> bool:
        return self.failure is None

    def sentence(self) -> str:
        """``message. fix.`` as one line for people."""
        text = self.message if self.message.endswith((".", "?", "!")) else self.message + "."
        return f"{text} {self.fix.rstrip('.')}." if self.fix else text


class AttemptStarted(_Event):
    """One model of the chain is being tried. ``argv`` is OpenCode's exact argv (no secrets: the prompt is on stdin)."""

    kind: Literal["attempt_started"] = "attempt_started"
    model_id: str | None = None
    cli_model_name: str
    argv: tuple[str, ...] = ()


class AttemptFinished(_Event):
    """One model of the chain is done, with its outcome."""

    kind: Literal["attempt_finished"] = "attempt_finished"
    cli_model_name: str
    outcome: Outcome


class FallbackTaken(_Event):
    """The previous attempt failed in a way another model may cure; the next one starts."""

    kind: Literal["fallback"] = "fallback"
    from_model: str
    to_model: str
    reason: FailureClass


RunEvent = Annotated[
    StepStart
    | Text
    | Reasoning
    | ToolUse
    | StepFinish
    | ErrorEvent
    | Raw
    | OutputLine
    | ProcessStats
    | GatewayRetrying
    | AttemptStarted
    | AttemptFinished
    | FallbackTaken,
    Field(discriminator="kind"),
]

event_adapter: TypeAdapter[RunEvent] = TypeAdapter(RunEvent)


def as_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one: OpenCode's fields may be absent or of another type."""
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _tokens(raw: Any) -> TokenUsage:
    if not isinstance(raw, dict):
        return TokenUsage()
    cache = as_object(raw.get("cache"))
    return TokenUsage(
        input=_int(raw.get("input")),
        output=_int(raw.get("output")),
        reasoning=_int(raw.get("reasoning")),
        cache_read=_int(cache.get("read")),
        cache_write=_int(cache.get("write")),
    )


def error_event(raw: Any, base: dict[str, Any]) -> ErrorEvent:
    """The :class:`ErrorEvent` of an OpenCode error object (``run``'s ``error`` event and serve's ``session.error`` alike)."""
    error = raw if isinstance(raw, dict) else {}
    data = as_object(error.get("data"))
    status = data.get("statusCode")
    retryable = data.get("isRetryable")
    body = data.get("responseBody")
    headers = data.get("responseHeaders")
    return ErrorEvent(
        name=str(error.get("name") or "UnknownError"),
        message=str(data.get("message") or error.get("message") or error.get("name") or "unknown error"),
        status_code=status if isinstance(status, int) and not isinstance(status, bool) else None,
        retryable=retryable if isinstance(retryable, bool) else None,
        response_body=body[:_RESPONSE_BODY_CHARS] if isinstance(body, str) else None,
        response_headers={
            str(k): str(v)
            for k, v in headers.items()
            if str(k).lower() not in _UNKEPT_HEADERS and not is_secret_key(str(k))
        }
        if isinstance(headers, dict)
        else None,
        **base,
    )


def _tool(part: dict[str, Any], base: dict[str, Any]) -> ToolUse:
    state = as_object(part.get("state"))
    output = state.get("output")
    return ToolUse(
        tool=str(part.get("tool") or "unknown"),
        status=str(state.get("status") or "unknown"),
        title=str(state.get("title") or ""),
        input=as_object(state.get("input")),
        output=output[:TOOL_OUTPUT_LIMIT] if isinstance(output, str) else None,
        error=str(state["error"]) if state.get("error") is not None else None,
        **base,
    )


def parse_line(line: str, *, attempt: int = 1, at: float = 0.0) -> RunEvent | None:
    """One line of ``opencode run --format json`` output as a typed event; None for a blank line."""
    stripped = line.strip()
    if not stripped:
        return None
    base: dict[str, Any] = {"attempt": attempt, "at": at}
    try:
        obj = json.loads(stripped)
    except ValueError:
        return OutputLine(line=stripped[:RAW_LINE_LIMIT], **base)
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return OutputLine(line=stripped[:RAW_LINE_LIMIT], **base)
    kind = obj["type"]
    part = as_object(obj.get("part"))
    if kind == "step_start":
        return StepStart(session_id=obj.get("sessionID") if isinstance(obj.get("sessionID"), str) else None, **base)
    if kind == "text":
        return Text(text=str(part.get("text") or ""), **base)
    if kind == "reasoning":
        return Reasoning(text=str(part.get("text") or ""), **base)
    if kind == "tool_use":
        return _tool(part, base)
    if kind == "step_finish":
        cost = part.get("cost")
        return StepFinish(
            reason=part.get("reason") if isinstance(part.get("reason"), str) else None,
            tokens=_tokens(part.get("tokens")),
            cost=float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else 0.0,
            **base,
        )
    if kind == "error":
        return error_event(obj.get("error"), base)
    if len(stripped) > RAW_LINE_LIMIT:
        return Raw(type=kind, data={"truncated": True}, **base)
    return Raw(type=kind, data=obj, **base)
