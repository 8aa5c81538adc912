"""Typed events of an ``opencode serve`` session, mapped from its ``GET /event`` stream.

Each model has the ``attempt`` and ``at`` fields of :mod:`nexus_core.opencode.events` so that it flows
through the same pipeline as the events of ``opencode run``. :func:`map_event` turns one SSE
payload (``{"type": ..., "properties": ...}``) into a typed event for one session, or None when
the payload belongs to another session or says nothing new.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from nexus_core.opencode.events import (
    TOOL_OUTPUT_LIMIT,
    StepFinish,
    StepStart,
    Text,
    _Event,
    _tokens,
    as_object,
    error_event,
)

__all__ = [
    "PermissionAsked",
    "PermissionReplied",
    "ReasoningDelta",
    "ServeEvent",
    "SessionIdle",
    "SessionRetry",
    "TextDelta",
    "ToolState",
    "map_event",
]


class TextDelta(_Event):
    """A piece of the answer as the gateway streamed it."""

    kind: Literal["text_delta"] = "text_delta"
    part_id: str = ""
    delta: str


class ReasoningDelta(_Event):
    """A piece of the model's thinking as the gateway streamed it."""

    kind: Literal["reasoning_delta"] = "reasoning_delta"
    part_id: str = ""
    delta: str


class ToolState(_Event):
    """A tool call changed state: ``pending``, ``running``, ``completed`` or ``error``."""

    kind: Literal["tool_state"] = "tool_state"
    call_id: str = ""
    tool: str
    status: str
    title: str = ""
    output: str | None = Field(None, description=f"the first {TOOL_OUTPUT_LIMIT} characters")
    error: str | None = None


class SessionRetry(_Event):
    """OpenCode is retrying a failed gateway request (``session.status`` of type ``retry``)."""

    kind: Literal["session_retry"] = "session_retry"
    retry: int
    message: str
    next_at_ms: int | None = Field(None, description="epoch milliseconds of the next try")


class PermissionAsked(_Event):
    """OpenCode asks whether a tool may run (an ``ask`` permission rule)."""

    kind: Literal["permission_asked"] = "permission_asked"
    permission_id: str
    permission: str
    patterns: tuple[str, ...] = ()
    call_id: str | None = None


class PermissionReplied(_Event):
    """A permission question was answered (``once``, ``always`` or ``reject``)."""

    kind: Literal["permission_replied"] = "permission_replied"
    permission_id: str
    reply: str


class SessionIdle(_Event):
    """The session has nothing left to do: the prompt is answered, failed or aborted."""

    kind: Literal["session_idle"] = "session_idle"


ServeEvent = TextDelta | ReasoningDelta | ToolState | SessionRetry | PermissionAsked | PermissionReplied | SessionIdle


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _session_of(props: dict[str, Any]) -> str:
    for holder in (props, props.get("part"), props.get("info")):
        if isinstance(holder, dict) and isinstance(holder.get("sessionID"), str):
            return holder["sessionID"]
    return ""


def map_event(
    payload: dict[str, Any], session_id: str, *, attempt: int = 1, at: float = 0.0, part_kinds: dict[str, str]
) -> _Event | None:
    """The typed event for ``session_id`` in one SSE payload; None for other sessions and unmapped types.

    ``part_kinds`` (part id → part type) is kept by the caller across calls: a delta names its
    part only, so it is a text or a reasoning delta according to the part seen before it.
    """
    kind = _str(payload.get("type"))
    props = as_object(payload.get("properties"))
    if _session_of(props) != session_id:
        return None
    base: dict[str, Any] = {"attempt": attempt, "at": at}
    if kind == "message.part.delta":
        part_id = _str(props.get("partID"))
        delta = _str(props.get("delta"))
        if not delta or _str(props.get("field")) not in ("", "text"):
            return None
        if part_kinds.get(part_id) == "reasoning":
            return ReasoningDelta(part_id=part_id, delta=delta, **base)
        return TextDelta(part_id=part_id, delta=delta, **base)
    if kind == "message.part.updated":
        part = as_object(props.get("part"))
        ptype = _str(part.get("type"))
        part_kinds[_str(part.get("id"))] = ptype
        # 1.2.15 sends text progress as growing part updates with a `delta` field, not part.delta events.
        if ptype in ("text", "reasoning") and isinstance(props.get("delta"), str) and props["delta"]:
            cls = ReasoningDelta if ptype == "reasoning" else TextDelta
            return cls(part_id=_str(part.get("id")), delta=props["delta"], **base)
        if ptype == "text" and isinstance(part.get("time"), dict) and part["time"].get("end"):
            return Text(text=_str(part.get("text")), **base)
        if ptype == "tool":
            state = as_object(part.get("state"))
            output = state.get("output")
            return ToolState(
                call_id=_str(part.get("callID")),
                tool=_str(part.get("tool")) or "unknown",
                status=_str(state.get("status")) or "unknown",
                title=_str(state.get("title")),
                output=output[:TOOL_OUTPUT_LIMIT] if isinstance(output, str) else None,
                error=str(state["error"])[:TOOL_OUTPUT_LIMIT] if state.get("error") is not None else None,
                **base,
            )
        if ptype == "step-start":
            return StepStart(session_id=session_id, **base)
        if ptype == "step-finish":
            cost = part.get("cost")
            return StepFinish(
                reason=part.get("reason") if isinstance(part.get("reason"), str) else None,
                tokens=_tokens(part.get("tokens")),
                cost=float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else 0.0,
                **base,
            )
        return None
    if kind == "session.status":
        status = as_object(props.get("status"))
        if status.get("type") == "retry":
            nxt = status.get("next")
            return SessionRetry(
                retry=int(status.get("attempt") or 0),
                message=_str(status.get("message")),
                next_at_ms=int(nxt) if isinstance(nxt, (int, float)) else None,
                **base,
            )
        if status.get("type") == "idle":
            return SessionIdle(**base)
        return None
    if kind == "session.idle":
        return SessionIdle(**base)
    if kind == "session.error":
        # The same error object as `run` prints: status, message, the gateway's body and headers.
        return error_event(props.get("error"), base)
    if kind == "permission.asked":
        asker = as_object(props.get("tool"))
        listed = props.get("patterns")
        patterns = listed if isinstance(listed, list) else []
        return PermissionAsked(
            permission_id=_str(props.get("id")),
            permission=_str(props.get("permission")),
            patterns=tuple(str(p) for p in patterns),
            call_id=_str(asker.get("callID")) or None,
            **base,
        )
    if kind == "permission.replied":
        return PermissionReplied(
            permission_id=_str(props.get("requestID") or props.get("permissionID") or props.get("id")),
            reply=_str(props.get("reply") or props.get("response")),
            **base,
        )
    return None
