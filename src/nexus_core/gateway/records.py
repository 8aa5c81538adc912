"""What the reference gateway keeps: the requests it received, and the state its threads share."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nexus_core.gateway.faults import Fault, RequestKind, parse_fault_spec
from nexus_core.gateway.replies import Script, assistant_turns_since_last_user, last_user_text
from nexus_core.gateway.transcripts import Transcript

__all__ = ["Controls", "RecordedRequest", "as_fault"]


class RecordedRequest(BaseModel):
    """One request the gateway received, as a test wants to see it.

    ``headers`` are lower-cased and redacted (``authorization: Bearer [redacted]``); ``bearer``
    says whether a bearer key was sent and whether it is the gateway's ``api_key``.
    ``outcome`` is what the gateway did: a status code as text (``"200"``, ``"429"``), or
    ``"drop"``, ``"cut"``, ``"silent"``, ``"malformed-sse"``, ``"html"`` (the 200 login page),
    ``"bad-models"``; ``"closed"`` if the connection ended first; empty while it is being answered.
    """

    model_config = ConfigDict(extra="forbid")

    seq: int
    at: float
    method: str
    path: str
    kind: RequestKind
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    messages: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    body_bytes: int = 0
    bearer: Literal["absent", "expected", "other"] = "absent"
    outcome: str = ""

    @property
    def last_user_text(self) -> str:
        """The text of the request's last user message."""
        return last_user_text(self.messages)


class Controls:
    """The mutable state shared between the server's loop and the caller's threads."""

    def __init__(self, faults: Iterable[Fault], record_limit: int) -> None:
        self.lock = threading.Condition()
        self.faults: list[tuple[Fault, list[int | None]]] = [(f, [f.times]) for f in faults]
        self.scripts: list[tuple[Script, list[int | None]]] = []
        self.records: deque[RecordedRequest] = deque(maxlen=record_limit)
        self.seq = 0
        self.call_seq = 0
        self.replay: Transcript | None = None

    def take_faults(self, kind: RequestKind, path: str, model: str | None) -> tuple[float, Fault | None]:
        """The latency to apply and the first other fault for this request; counts them down."""
        latency, chosen = 0.0, None
        with self.lock:
            for fault, left in list(self.faults):
                if not fault.applies_to(kind, path, model):
                    continue
                if fault.kind == "latency":
                    if latency:
                        continue
                    latency = fault.seconds
                elif chosen is None:
                    chosen = fault
                else:
                    continue
                if left[0] is not None:
                    left[0] -= 1
                    if left[0] <= 0:
                        self.faults.remove((fault, left))
        return latency, chosen

    def take_script(self, messages: list[dict[str, Any]]) -> Script | None:
        """The newest script that answers these messages; counts its runs down (the first turn only)."""
        text = last_user_text(messages)
        first_turn = assistant_turns_since_last_user(messages) == 0
        with self.lock:
            for script, left in self.scripts:
                if script.match not in text:
                    continue
                if first_turn and left[0] is not None:
                    if left[0] <= 0:
                        continue  # used up for new runs, but still answers the follow-ups of its runs
                    left[0] -= 1
                return script
        return None

    def call_ids(self, count: int) -> list[str]:
        """``count`` new tool-call ids, unique for the gateway's life."""
        with self.lock:
            start = self.call_seq
            self.call_seq += count
        return [f"call_{n:04d}" for n in range(start + 1, start + count + 1)]


def as_fault(fault: Fault | str) -> Fault:
    """``fault`` itself, or parsed from a CLI spec such as ``"429,times=2"``."""
    return parse_fault_spec(fault) if isinstance(fault, str) else fault
