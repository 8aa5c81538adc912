"""Wire transcripts: what a real gateway answered, byte for byte, so the reference gateway can replay it.

A transcript is a JSON file (``tests/transcripts/*.json``) with where it came from (the
software and version, how it was run, when) and the exchanges it recorded: each request's
method, path, key (``good``/``bad``/``none``) and model, and the response's status, headers
and body — a streamed answer keeps its SSE framing as sent. ``expect`` says what the
diagnosis must conclude, for the tests.

    gw.replay(load_transcript(path))   # the reference gateway now answers as the real one did
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Exchange", "ReplayedRequest", "ReplayedResponse", "Transcript", "load_transcript"]

# Hop-by-hop or per-send headers: the replaying server writes its own.
_NOT_REPLAYED = frozenset({"date", "content-length", "transfer-encoding", "connection", "keep-alive"})


class ReplayedRequest(BaseModel):
    """The request a response answered."""

    model_config = ConfigDict(frozen=True)

    method: str
    path: str
    auth: Literal["good", "bad", "none"] = "good"
    model: str | None = None
    stream: bool = False


class ReplayedResponse(BaseModel):
    """A response as the real gateway sent it."""

    model_config = ConfigDict(frozen=True)

    status: int
    reason: str = ""
    headers: list[tuple[str, str]] = Field(default_factory=list)
    body: str = ""

    def replay_headers(self) -> list[tuple[str, str]]:
        """The recorded headers without the ones the replaying server must write itself."""
        return [(k, v) for k, v in self.headers if k.lower() not in _NOT_REPLAYED]

    def content_type(self) -> str:
        return next((v for k, v in self.headers if k.lower() == "content-type"), "application/json")


class Exchange(BaseModel):
    """One request and the answer it got."""

    model_config = ConfigDict(frozen=True)

    request: ReplayedRequest
    response: ReplayedResponse


class Transcript(BaseModel):
    """A recording of one situation on one real gateway."""

    model_config = ConfigDict(frozen=True)

    name: str
    gateway: str
    description: str = ""
    source: dict[str, Any] = Field(default_factory=dict)
    expect: dict[str, Any] = Field(default_factory=dict)
    exchanges: list[Exchange] = Field(min_length=1)

    def answer_for(self, method: str, path: str, model: str | None) -> ReplayedResponse | None:
        """The recorded answer to this request: same method and path ending, the same model first."""
        endpoint = path.rstrip("/").rsplit("/v1", 1)[-1] or "/"
        candidates = [
            e
            for e in self.exchanges
            if e.request.method.upper() == method.upper() and e.request.path.rstrip("/").endswith(endpoint)
        ]
        if not candidates:
            return None
        same = [e for e in candidates if model is not None and e.request.model == model]
        return (same or candidates)[0].response


def load_transcript(path: str | Path) -> Transcript:
    """Read a transcript file."""
    return Transcript.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
