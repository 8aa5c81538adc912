"""How an attempt ended, from what it showed: the events seen, OpenCode's stderr, its exit code.

An attempt succeeds only on a terminal ``step_finish`` with reason ``stop`` (or ``length`` with
some text); OpenCode exits 0 on most failures, so its last ``error`` event is the truth, and a
request it kept retrying is classified from the message it logged.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from nexus_core.diagnosis import classify
from nexus_core.diagnosis.opencode import diagnose_error
from nexus_core.opencode.classify import classify_error, retry_class, status_of_message
from nexus_core.opencode.events import (
    ErrorEvent,
    FailureClass,
    Reasoning,
    RunEvent,
    StepFinish,
    StepStart,
    Text,
    ToolUse,
)

__all__ = [
    "STDERR_LINE_CHARS",
    "STDERR_TAIL_CHARS",
    "Progress",
    "StderrTail",
    "Verdict",
    "final_verdict",
    "retry_verdict",
]

STDERR_TAIL_CHARS = 64 * 1024
STDERR_LINE_CHARS = 4 * 1024
_REAL_REASONS = frozenset({"stop", "length", "tool-calls", "content-filter"})
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOCATED = re.compile(r"line \d+, column \d+")


class Verdict(NamedTuple):
    """An attempt's outcome before redaction and timing: the class (None: success), a message, the
    HTTP status when known, and a fix when a diagnosis has a better one than the class's own."""

    failure: FailureClass | None
    message: str
    status: int | None = None
    fix: str | None = None


class StderrTail:
    """The last lines OpenCode wrote to stderr, bounded in lines and characters."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque()
        self._chars = 0

    def add(self, line: str) -> None:
        """Keep ``line`` (cut to :data:`STDERR_LINE_CHARS`), dropping the oldest lines over the bound."""
        line = line[:STDERR_LINE_CHARS]
        self._lines.append(line)
        self._chars += len(line)
        while self._chars > STDERR_TAIL_CHARS and self._lines:
            self._chars -= len(self._lines.popleft())

    def text(self) -> str:
        """The lines kept, joined."""
        return "\n".join(self._lines)

    def opencode_error(self) -> str:
        """OpenCode's own ``Error: …`` message (ANSI colours removed), with its first located detail."""
        lines = [_ANSI.sub("", line).strip() for line in self._lines]
        for index in range(len(lines) - 1, -1, -1):
            if lines[index].startswith("Error: "):
                message = lines[index].removeprefix("Error: ").rstrip()
                if message.endswith(":"):
                    detail = next((line for line in lines[index + 1 :] if _LOCATED.search(line)), "")
                    message = f"{message} {detail}" if detail else message.rstrip(":")
                return message
        return ""


@dataclass
class Progress:
    """What an attempt's events have shown so far, for the outcome."""

    errors: list[ErrorEvent] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    finish: StepFinish | None = None
    saw_text: bool = False
    saw_step: bool = False
    empty_steps: int = 0
    _output_in_step: bool = False

    def see(self, event: RunEvent) -> None:
        """Take ``event`` into account."""
        if isinstance(event, ErrorEvent):
            self.errors.append(event)
        elif isinstance(event, StepStart):
            self.saw_step = True
            self._output_in_step = False
        elif isinstance(event, (Text, Reasoning, ToolUse)):
            self._output_in_step = True
            self.saw_text = self.saw_text or (isinstance(event, Text) and bool(event.text.strip()))
        elif isinstance(event, StepFinish):
            self.finish = event
            empty = event.tokens.total == 0 and not self._output_in_step and event.reason not in _REAL_REASONS
            self.empty_steps = self.empty_steps + 1 if empty else 0


def retry_verdict(progress: Progress, how: str) -> Verdict:
    """The verdict on an attempt ended while OpenCode kept retrying a failing request (``how``: why it ended)."""
    return gateway_retry_verdict(progress.retries[-1], how, answering=progress.saw_step)


def gateway_retry_verdict(last: str, how: str, *, answering: bool = False) -> Verdict:
    """The verdict on OpenCode's retries of a failing request, from the last retry's message (both
    transports); ``answering``: a step had begun, so a dropped connection cut the answer."""
    failure = retry_class(last)
    if failure is FailureClass.CONNECTION and answering:
        failure = FailureClass.CUT_STREAM
    status = status_of_message(last)
    diagnosis = classify(status, message=last)
    fix = diagnosis.fix if diagnosis.failure is failure else None
    who = f"{diagnosis.gateway}: " if fix and diagnosis.gateway else ""
    return Verdict(failure, f"{who}the gateway kept failing ({last}); {how}", status, fix)


def error_verdict(error: ErrorEvent) -> Verdict:
    """The verdict on OpenCode's error event (both transports): its class, and the gateway's own
    words and fix when the diagnosis table recognises them ("LiteLLM proxy: …")."""
    failure, status = classify_error(error)
    diagnosis = diagnose_error(error)
    if diagnosis is not None and failure is diagnosis.failure:
        return Verdict(failure, diagnosis.summary, status, diagnosis.fix)
    return Verdict(failure, error.message, status)


def final_verdict(progress: Progress, stderr: StderrTail, code: int | None) -> Verdict:
    """The verdict on an attempt whose OpenCode exited (with ``code``; None: unknown)."""
    finish = progress.finish
    if progress.errors:
        return error_verdict(progress.errors[-1])
    if finish is not None and (finish.reason == "stop" or (finish.reason == "length" and progress.saw_text)):
        if code not in (0, None):
            return Verdict(FailureClass.FAILED, f"OpenCode exited with code {code} after answering")
        return Verdict(None, "finished" if finish.reason == "stop" else "finished at the output limit")
    stderr_line = stderr.opencode_error()
    if code not in (0, None):
        lowered = stderr_line.lower()
        if "config" in lowered and ("invalid" in lowered or "not valid" in lowered):
            return Verdict(FailureClass.CONFIG_INVALID, stderr_line)
        if lowered.startswith("model not found"):
            return Verdict(FailureClass.MODEL_NOT_FOUND, stderr_line)
        detail = f": {stderr_line}" if stderr_line else ""
        return Verdict(FailureClass.FAILED, f"OpenCode exited with code {code}{detail}")
    if finish is not None:
        return Verdict(FailureClass.CUT_STREAM, f"the answer ended with reason {finish.reason!r}, not 'stop'")
    return Verdict(FailureClass.CUT_STREAM, "OpenCode ended without a finished answer")
