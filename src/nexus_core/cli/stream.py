"""How ``orchestrate`` shows a delegation as it happens: the answer on stdout, progress on stderr.

On the serve transport the answer arrives as text deltas: each is written as it comes and
flushed at once, so the text grows inline (on a terminal and through a pipe alike); the
finished part then only ends the line. On the run transport each finished part is printed whole.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    ErrorEvent,
    FailureClass,
    FallbackTaken,
    GatewayRetrying,
    OutputLine,
    Reasoning,
    StepFinish,
    Text,
    ToolUse,
)
from nexus_core.opencode.serve.events import (
    PermissionAsked,
    PermissionReplied,
    ReasoningDelta,
    SessionRetry,
    TextDelta,
    ToolState,
)
from nexus_core.routing.chain import DelegationResult
from nexus_core.routing.last_word import last_word, plain_message

__all__ = ["Printer", "json_line"]

STDERR_LINES_SHOWN = 10


def json_line(data: dict[str, object], out: TextIO | None = None) -> None:
    """One NDJSON line, flushed (a script reading the pipe sees each event as it happens)."""
    stream = out or sys.stdout
    stream.write(json.dumps(data, default=str) + "\n")
    stream.flush()


class Printer:
    """Readable live output: the answer on stdout, progress and causes on stderr."""

    def __init__(self, out: TextIO, err: TextIO, *, thinking: bool = False) -> None:
        self.out = out
        self.err = err
        self.thinking = thinking
        self._inline = False  # stdout is in the middle of a streamed line
        self._thinking_inline = False
        self._tty = bool(getattr(out, "isatty", lambda: False)())
        self.wrote_nothing = True  # no answer text went to ``out`` yet

    def note(self, text: str) -> None:
        """One progress line on stderr (on a terminal, a streamed answer line is ended first)."""
        if self._inline and self._tty:
            self.out.write("\n")
            self.out.flush()
            self._inline = False
        self._end_thinking()
        print(text, file=self.err, flush=True)

    def _end_thinking(self) -> None:
        if self._thinking_inline:
            self.err.write("\n")
            self.err.flush()
            self._thinking_inline = False

    def _delta(self, text: str) -> None:
        self.wrote_nothing = False
        self._end_thinking()
        self.out.write(text)
        self.out.flush()
        self._inline = True

    def _text(self, text: str) -> None:
        if self._inline:
            self.out.write("\n")
            self.out.flush()
            self._inline = False
        else:
            self.wrote_nothing = self.wrote_nothing and not text
            print(text, file=self.out, flush=True)

    def __call__(self, event: Any) -> None:
        if isinstance(event, TextDelta):
            self._delta(event.delta)
        elif isinstance(event, Text):
            self._text(event.text)
        elif isinstance(event, ReasoningDelta):
            if self.thinking:
                if not self._thinking_inline:
                    self.err.write("  thinking: ")
                self.err.write(event.delta)
                self.err.flush()
                self._thinking_inline = True
        else:
            line = self._line(event)
            if line is not None:
                self.note(line)

    def _line(self, event: Any) -> str | None:
        if isinstance(event, AttemptStarted):
            name = (
                f"{event.model_id} ({event.cli_model_name})"
                if event.model_id and event.model_id != event.cli_model_name
                else event.cli_model_name
            )
            return f"→ attempt {event.attempt}: {name}"
        if isinstance(event, Reasoning):
            return f"  thinking: {event.text}"
        if isinstance(event, ToolUse):
            mark = "✓" if event.status == "completed" else "✗"
            title = event.title or json.dumps(event.input)[:120]
            return f"  {mark} {event.tool} {title}" + (f": {event.error}" if event.error else "")
        if isinstance(event, ToolState):
            if event.status not in ("completed", "error"):
                return None
            mark = "✓" if event.status == "completed" else "✗"
            return f"  {mark} {event.tool} {event.title}".rstrip() + (f": {event.error}" if event.error else "")
        if isinstance(event, PermissionAsked):
            pattern = ", ".join(event.patterns) or "*"
            return f"  ? OpenCode asks permission for {event.permission} ({pattern})"
        if isinstance(event, PermissionReplied):
            return f"  permission answered: {event.reply}"
        if isinstance(event, StepFinish):
            t = event.tokens
            cost = f" · ${event.cost:.4f}" if event.cost else ""
            return (
                f"  step finished ({event.reason}) · tokens in {t.input} / out {t.output}"
                + (f" / reasoning {t.reasoning}" if t.reasoning else "")
                + cost
            )
        if isinstance(event, ErrorEvent):
            return f"  error from OpenCode: {plain_message(event.message)}"
        if isinstance(event, GatewayRetrying | SessionRetry):
            return f"  … the gateway is being retried by OpenCode (retry {event.retry}): {event.message}"
        if isinstance(event, OutputLine):
            return f"  {event.line}"
        if isinstance(event, AttemptFinished) and not event.outcome.ok:
            return f"✗ attempt {event.attempt} failed ({event.outcome.failure}): {plain_message(event.outcome.message)}"
        if isinstance(event, FallbackTaken):
            return f"↪ falling back from {event.from_model} to {event.to_model} ({event.reason})"
        return None

    def result(self, result: DelegationResult, timeout_s: float | None = None) -> None:
        """The verdict: who answered (and the session to continue), or the last word: each model tried and why."""
        if self._inline:
            self._text("")
        final = result.final
        session = f" · session {result.session_id}" if result.session_id else ""
        if result.ok:
            self.note(f"✓ done in {result.duration_s:.1f} s by {final.model_id or final.cli_model_name}{session}")
        else:
            if result.outcome.failure is FailureClass.FAILED:
                for line in final.stderr_tail.splitlines()[-STDERR_LINES_SHOWN:]:
                    self.note(f"  opencode: {line[:300]}")
            self.note(f"✗ failed: {last_word(result, timeout_s)}{session}")
