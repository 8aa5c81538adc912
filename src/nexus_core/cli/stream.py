"""How ``orchestrate`` shows a delegation as it happens: the answer on stdout, progress on stderr.

On the serve transport the answer arrives as text deltas: each is written as it comes and
flushed at once, so the text grows inline (on a terminal and through a pipe alike); the
finished part then only ends the line. On the run transport each finished part is printed whole.
Progress is worded by :func:`nexus_core.opencode.describe.describe`, as on the dashboard and over MCP.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from nexus_core.opencode.describe import describe
from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    FailureClass,
    FallbackTaken,
    Raw,
    StepStart,
    Text,
)
from nexus_core.opencode.serve.events import ReasoningDelta, TextDelta, ToolState
from nexus_core.routing.chain import DelegationResult
from nexus_core.routing.last_word import last_word

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
                    self.err.write("  … ")
                self.err.write(event.delta)
                self.err.flush()
                self._thinking_inline = True
        else:
            for line in self._lines(event):
                self.note(line)

    def _lines(self, event: Any) -> list[str]:
        said = describe(event)
        if said is None or isinstance(event, StepStart | Raw):
            return []  # a terminal shows what a person follows; the dashboard's log keeps every step
        if isinstance(event, ToolState) and event.status not in ("completed", "error"):
            return []  # one line per call, when it ends
        if isinstance(event, AttemptFinished) and event.outcome.ok:
            return []  # the verdict line says who answered
        top = isinstance(event, AttemptStarted | AttemptFinished | FallbackTaken)
        return said.lines("" if top else "  ")

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
