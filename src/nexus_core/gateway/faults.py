"""Fault injection for the reference gateway: what can go wrong between OpenCode and a model.

A :class:`Fault` says what the gateway does instead of (or before) answering, and to which
requests: every request, one model's, one path's, and optionally only the next ``times`` of them.
The CLI writes faults as short specs, parsed by :func:`parse_fault_spec`::

    429                         every chat request gets 429 (Retry-After: 1)
    status=429,retry_after=5    the same with Retry-After: 5
    latency=2,model=claude-opus-4-5
    drop,times=1                the next request only: the connection closes without a response
    bad-models                  GET /v1/models returns a list that is not JSON
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nexus_core.errors import NexusError, first_validation_problem

__all__ = ["FAULT_KINDS", "Fault", "FaultKind", "RequestKind", "parse_fault_spec"]

FaultKind = Literal["latency", "status", "drop", "cut", "malformed-sse", "html", "silent", "bad-models"]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]

#: What a request is for: an agent turn, OpenCode's session-title request, the model list, anything else.
RequestKind = Literal["chat", "title", "models", "other"]

_STATUS_SHORTHANDS = {"401", "403", "404", "429", "500", "502", "503", "504"}


class Fault(BaseModel):
    """One injected fault.

    ``latency`` waits ``seconds`` before the first byte and then answers normally (it stacks with
    another fault). ``status`` answers ``code`` with an OpenAI-style error body (``Retry-After:
    retry_after`` on 429 and 503; an HTML proxy page on 502). ``drop`` closes the connection without a
    response; ``cut`` starts a streamed answer and closes mid-way; ``malformed-sse`` streams lines
    that are not JSON; ``html`` answers 200 with a proxy login page; ``silent`` accepts and never
    answers; ``bad-models`` makes ``GET /v1/models`` return a list that is not JSON
    (``shape=True``: valid JSON without a ``data`` list).

    Without ``model`` or ``path`` a fault hits every request (the stream faults only chat
    requests). ``model`` and ``path`` narrow it (a path matches by suffix: ``/models`` matches
    ``/v1/models``; the model list has no model); ``times`` limits it to the next N matching
    requests. OpenCode's background session-title request is spared unless ``include_title`` is
    set, so that "the next request" always means the agent's turn.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    seconds: float = Field(default=0.0, ge=0, le=3600)
    code: int = Field(default=500, ge=400, le=599)
    retry_after: int = Field(default=1, ge=0, le=86400)
    shape: bool = False
    model: str | None = None
    path: str | None = None
    times: int | None = Field(default=None, ge=1)
    include_title: bool = False

    @model_validator(mode="after")
    def _kind_needs_its_value(self) -> Fault:
        if self.kind == "latency" and self.seconds <= 0:
            raise ValueError("a latency fault needs seconds > 0")
        return self

    def applies_to(self, kind: RequestKind, path: str, model: str | None) -> bool:
        """Whether this fault is aimed at a request of ``kind`` to ``path`` for ``model``."""
        if kind == "title" and not self.include_title:
            return False
        if self.kind == "bad-models":
            return kind == "models"
        if self.path is not None and not path.rstrip("/").endswith(self.path.rstrip("/")):
            return False
        if self.model is not None and self.model != model:
            return False
        if self.path is None and self.kind in ("cut", "malformed-sse"):
            return kind in ("chat", "title")
        return True

    def describe(self) -> str:
        """A short human description, e.g. ``status 429 (Retry-After 5) for claude-opus-4-5, next 2``."""
        what = {
            "latency": f"latency {self.seconds:g}s",
            "status": f"status {self.code}" + (f" (Retry-After {self.retry_after})" if self.code in (429, 503) else ""),
            "bad-models": "malformed model list" + (" (wrong shape)" if self.shape else ""),
        }.get(self.kind, self.kind)
        scope = [f"for {self.model}"] if self.model else []
        scope += [f"on {self.path}"] if self.path else []
        scope += [f"next {self.times}"] if self.times else []
        return f"{what} {', '.join(scope)}" if scope else what


def parse_fault_spec(spec: str) -> Fault:
    """Parse a CLI fault spec (``KIND[=VALUE][,key=value...]``) into a :class:`Fault`.

    Raises :class:`NexusError` with the accepted forms when the spec is wrong.
    """
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise _bad_spec(spec, "it is empty")
    head, _, value = parts[0].partition("=")
    head = head.strip().lower()
    fields: dict[str, object] = {}
    if head in _STATUS_SHORTHANDS or head.isdigit():
        fields.update(kind="status", code=head)
    elif head == "status":
        fields.update(kind="status", code=value or "500")
    elif head == "latency":
        fields.update(kind="latency", seconds=value)
    elif head == "bad-models":
        fields.update(kind="bad-models", shape=value.strip().lower() == "shape")
    elif head in FAULT_KINDS:
        if value:
            raise _bad_spec(spec, f"{head} takes no value")
        fields["kind"] = head
    else:
        raise _bad_spec(spec, f"{head!r} is not a fault kind")
    for option in parts[1:]:
        key, sep, val = option.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not sep or key not in {"model", "path", "times", "retry_after", "seconds", "include_title"}:
            raise _bad_spec(spec, f"{option!r} is not an option")
        fields[key] = val.strip().lower() in {"1", "true", "yes"} if key == "include_title" else val.strip()
    try:
        return Fault.model_validate(fields)
    except ValidationError as exc:
        raise _bad_spec(spec, first_validation_problem(exc)) from None


def _bad_spec(spec: str, why: str) -> NexusError:
    return NexusError(
        f"Fault spec {spec!r} is not valid: {why}",
        "Use KIND[=VALUE][,model=M][,path=P][,times=N] with KIND one of "
        "latency=SECONDS, status=CODE (or just 401/403/404/429/500/502), drop, cut, malformed-sse, html, "
        "silent, bad-models[=shape]; 429 also takes retry_after=SECONDS",
    )
