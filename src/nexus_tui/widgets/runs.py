"""One run's live view: status, attempts, process stats with a sparkline, tool calls and its log.

Events become lines (or, streamed, text deltas) queued in a :class:`RunLog`; a timer writes them
in batches with a line cap, so memory stays bounded however long the run. The view follows the
tail only while it is scrolled to the bottom and otherwise counts the lines that arrived below
("N new"). Once a run with an OpenCode session has ended, its follow-up box (F6) takes the next
message for that session; the log goes on under a separator.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Sparkline, Static

from nexus_core.opencode.describe import describe
from nexus_core.opencode.serve.events import ToolState
from nexus_tui.views import RunStatus
from nexus_tui.widgets.run_log import RunLog
from nexus_tui.widgets.tool_calls import ToolCalls

__all__ = ["STATUS_STYLE", "RunStatus", "RunView", "event_lines"]

LOG_LINE_CAP = 5_000
# The reply kept for "Copy reply": its last quarter megabyte (a run may stream far more).
REPLY_CHAR_CAP = 256 * 1024
STATS_HISTORY = 60
FLUSH_INTERVAL = 1 / 30


STATUS_STYLE = {
    RunStatus.QUEUED: ("◌", "dim"),
    RunStatus.RUNNING: ("●", "bold cyan"),
    RunStatus.SUCCEEDED: ("✓", "bold green"),
    RunStatus.FAILED: ("✗", "bold red"),
    RunStatus.CANCELLING: ("◍", "yellow"),
    RunStatus.CANCELLED: ("■", "yellow"),
}


@dataclass
class Attempt:
    """One model tried by the run and how it ended (None while it runs)."""

    number: int
    cli_model_name: str
    verdict: str | None = None
    ok: bool = False


def event_lines(event: Any) -> list[str]:
    """The log lines for one run event, worded by :func:`~nexus_core.opencode.describe.describe`
    (none for process stats, which the sparkline shows)."""
    kind = getattr(event, "kind", "")
    if kind == "text":
        return event.text.splitlines() or [""]
    if kind in ("text_delta", "reasoning_delta"):
        return [event.delta]
    if kind == "tool_state" and event.status not in ("completed", "error"):
        return []  # the tool calls' table shows a call while it runs; the log gets it once it ends
    said = describe(event)
    return said.lines() if said is not None else []


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _megabytes(rss: int) -> str:
    return f"{rss / 1_048_576:.0f} MB"


class RunView(Vertical):
    """A run's pane. Feed it events with :meth:`feed`; it draws them in batches."""

    BINDINGS = [
        Binding("c", "cancel", "Cancel run", id="run.cancel"),
        Binding("end", "follow", "Follow", show=False, id="run.follow"),
        Binding("z", "app.zoom", "Zoom", id="run.zoom"),
        Binding("y", "app.copy_reply", "Copy reply", id="run.copy"),
        Binding("s", "app.save_log", "Save log", show=False, id="run.save"),
        Binding("r", "app.rerun", "Re-run on…", show=False, id="run.rerun"),
    ]

    class CancelRequested(Message):
        """The user asked to cancel this run."""

        def __init__(self, run_id: str) -> None:
            super().__init__()
            self.run_id = run_id

    class FollowUp(Message):
        """The user sent a follow-up into this run's session (from its follow-up box)."""

        def __init__(self, run_id: str, text: str) -> None:
            super().__init__()
            self.run_id = run_id
            self.text = text

    class StatusChanged(Message):
        """The run's status changed (the tab label follows it)."""

        def __init__(self, run_id: str, status: RunStatus) -> None:
            super().__init__()
            self.run_id = run_id
            self.status = status

    def __init__(
        self,
        run_id: str,
        task: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        show_timings: bool = True,
        line_cap: int = LOG_LINE_CAP,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.run_id = run_id
        self.task_text = task
        self.clock = clock
        self.show_timings = show_timings
        self.line_cap = line_cap
        self.status = RunStatus.QUEUED
        self.waiting = False
        self.attempts: list[Attempt] = []
        self.started_at = clock()
        self.finished_at: float | None = None
        self.verdict = ""
        self.cpu_history: deque[float] = deque([0.0] * STATS_HISTORY, maxlen=STATS_HISTORY)
        self.rss_bytes = 0
        # The current attempt's answer, as copied by "Copy reply".
        self._reply: deque[str] = deque()
        self._reply_chars = 0
        self._tool_numbers = 0
        # What the log's last line is while text streams into it ("text" or "reasoning"), else None.
        self._streaming: str | None = None
        self._streamed_text = False  # text deltas came since the last finished text part
        # Made here, not in compose: a run's first events can arrive before its tab is mounted.
        self._tools = ToolCalls(id="run-tools")
        self._log = RunLog(line_cap=line_cap, id="run-log")
        self._last_flush = 0.0
        self._flush_soon = False
        # What the status, detail, process and "new lines" widgets show, so only changes redraw them.
        self._drawn: dict[str, object] = {}
        self._log.queue_lines(f"$ {line}" for line in task.splitlines()[:3])

    def compose(self) -> ComposeResult:
        with Horizontal(id="run-head"):
            yield Static("", id="run-status")
            yield Static("", id="run-proc")
            yield Sparkline(list(self.cpu_history), id="run-cpu", min_color="green", max_color="red")
        yield Static("", id="run-detail")
        yield self._tools
        yield self._log
        yield Static("", id="run-new-lines")
        box = Input(placeholder="Follow-up for this session — Enter sends it (F6 comes here)", id="run-follow-up")
        box.display = False
        yield box

    @property
    def number(self) -> int:
        """The run's number (``run-3`` is 3)."""
        return int(self.run_id.rsplit("-", 1)[-1])

    @property
    def unseen_lines(self) -> int:
        return self._log.unseen_lines

    @property
    def lines_received(self) -> int:
        return self._log.lines_received

    @property
    def reply_text(self) -> str:
        """The answer of the current (last) attempt so far (its last :data:`REPLY_CHAR_CAP` characters)."""
        return "".join(self._reply).strip()

    def on_mount(self) -> None:
        self.set_interval(FLUSH_INTERVAL, self.flush)
        if self.show_timings:
            self.set_interval(1.0, self._draw_status)
        self._draw_status()
        self._draw_stats()

    @property
    def log_widget(self) -> RunLog:
        return self._log

    @property
    def current_model(self) -> str:
        return self.attempts[-1].cli_model_name if self.attempts else "…"

    def feed(self, event: Any) -> None:
        """Take one event of the run (typed adapter events, dispatched on ``kind``)."""
        kind = getattr(event, "kind", "")
        if kind == "stats":
            self.cpu_history.append(float(event.cpu_percent))
            self.rss_bytes = int(event.rss_bytes)
            self._draw_stats()
            return
        if kind in ("text_delta", "reasoning_delta"):
            self._stream_delta(event.delta, reasoning=kind == "reasoning_delta")
            return
        if kind == "text" and self._streamed_text:
            # Its text came as deltas: the part's end only ends the paragraph.
            self._streamed_text = False
            self._keep_reply("\n")
            return
        if kind == "tool_state":
            self.tool_call(
                event.call_id or f"tool-{event.tool}",
                event.tool,
                event.status,
                title=event.title,
                output=event.output,
                error=event.error,
            )
            return
        if kind in ("permission_asked", "permission_replied", "session_idle"):
            return  # the dashboard asks the question itself, and logs the answer (see RunControl)
        if kind == "text":
            self._keep_reply(event.text if not self._reply else "\n" + event.text)
        elif kind == "tool_use":
            self._tool_numbers += 1
            self.tool_call(
                f"tool-{self._tool_numbers}",
                event.tool,
                event.status,
                title=event.title,
                output=event.output,
                error=event.error,
                log=False,
            )
        if kind == "attempt_started":
            self._reply.clear()
            self._reply_chars = 0
            self.attempts.append(Attempt(number=event.attempt, cli_model_name=event.cli_model_name))
            # Announced even when already running: the tab label names the model being tried.
            self.status = RunStatus.RUNNING
            self.post_message(self.StatusChanged(self.run_id, self.status))
            self._draw_status()
        elif kind == "attempt_finished" and self.attempts:
            attempt = self.attempts[-1]
            attempt.ok = bool(event.outcome.ok)
            attempt.verdict = "ok" if attempt.ok else str(event.outcome.failure)
            self._draw_status()
        self.write_lines(event_lines(event))

    def _keep_reply(self, piece: str) -> None:
        self._reply.append(piece)
        self._reply_chars += len(piece)
        while self._reply_chars > REPLY_CHAR_CAP and len(self._reply) > 1:
            self._reply_chars -= len(self._reply.popleft())

    def write_lines(self, lines: Iterable[str]) -> None:
        """Queue lines for the next batched write (the oldest queued ones drop beyond the cap)."""
        lines = list(lines)
        if lines:
            self._streaming = None
            self._log.queue_lines(lines)
            self._queued()

    def stream_text(self, delta: str, *, reasoning: bool = False) -> None:
        """Append a streamed piece of the answer (or of its reasoning, which the copied reply leaves out)."""
        if not reasoning:
            self._keep_reply(delta)
        self._log.queue_text(delta)
        self._queued()

    def _stream_delta(self, delta: str, *, reasoning: bool) -> None:
        """A session's delta: reasoning starts on a line of its own, marked ``…``; the answer after it
        on the next line."""
        kind = "reasoning" if reasoning else "text"
        shown = delta
        if kind != self._streaming:
            if reasoning:
                shown = ("\n" if self._streaming else "") + "… " + delta
            elif self._streaming:
                shown = "\n" + delta
            self._streaming = kind
        if not reasoning:
            self._streamed_text = True
            self._keep_reply(delta)
        self._log.queue_text(shown)
        self._queued()

    def tool_call(
        self,
        call_id: str,
        tool: str,
        state: str,
        *,
        title: str = "",
        output: str | None = None,
        error: str | None = None,
        log: bool = True,
    ) -> None:
        """A tool call started or moved on: its row updates in place; a finished one is also logged."""
        row = self._tools.update_call(call_id, tool, state, title=title, output=output, error=error)
        if log and row.finished:
            self.write_lines(event_lines(ToolState(tool=tool, status=row.state, title=row.title, error=error)))

    def set_waiting(self, waiting: bool) -> None:
        """Whether a permission question of this run waits for the user (the tab shows it)."""
        if waiting != self.waiting:
            self.waiting = waiting
            self.post_message(self.StatusChanged(self.run_id, self.status))
            self._draw_status()

    def flush(self) -> None:
        """Write the queued lines and text in one batch (see :meth:`RunLog.flush`)."""
        if not self.is_mounted:
            return
        self._last_flush = time.perf_counter()
        self._log.flush()
        self._draw_new_lines()

    def _queued(self) -> None:
        """Something was queued: after a quiet spell it is written as soon as the current batch of
        events is in (not a timer tick later); while events pour in, the timer writes them in batches."""
        if self._flush_soon or time.perf_counter() - self._last_flush < FLUSH_INTERVAL:
            return
        if not self.is_mounted:  # not in an app yet: the timer writes it once mounted
            return
        self._flush_soon = True
        self.app.call_next(self._flush_queued)

    def _flush_queued(self) -> None:
        self._flush_soon = False
        self.flush()

    def finish(self, status: RunStatus, verdict: str) -> None:
        """The run ended: show its final status and one-line verdict."""
        self.finished_at = self.clock()
        self.verdict = verdict
        self.set_status(status)
        self.write_lines([f"══ {status.value}: {verdict}" if verdict else f"══ {status.value}"])
        self.flush()

    @property
    def follow_up_box(self) -> Input:
        return self.query_one("#run-follow-up", Input)

    def allow_follow_up(self, allowed: bool) -> None:
        """Show (or hide) the follow-up box: shown once the run has ended with a session to go on in."""
        if self.is_mounted:
            self.follow_up_box.display = allowed

    def begin_follow_up(self, text: str) -> None:
        """The log goes on under a separator with the follow-up; the status is queued again."""
        if self.is_mounted and self.follow_up_box.has_focus:
            self._log.focus()  # the box hides until the answer is in: focus must not vanish with it
        self.allow_follow_up(False)
        self.attempts.clear()
        self.started_at = self.clock()
        self.finished_at = None
        self.verdict = ""
        self.write_lines(["", "──── follow-up ────", *(f"$ {line}" for line in text.splitlines()[:3])])
        self.set_status(RunStatus.QUEUED)

    def on_key(self, event: events.Key) -> None:
        # Esc leaves the follow-up box for the run's log, so the run's keys work again; an empty box
        # goes away (F6 brings it back), so that switching tabs cannot land the focus in it.
        if event.key == "escape" and self.is_mounted and self.follow_up_box.has_focus:
            event.stop()
            self._log.focus()
            if not self.follow_up_box.value:
                self.allow_follow_up(False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "run-follow-up":
            return
        event.stop()
        text = event.value.strip()
        if text:
            event.input.value = ""
            self.post_message(self.FollowUp(self.run_id, text))

    def set_status(self, status: RunStatus) -> None:
        if status != self.status:
            self.status = status
            self.post_message(self.StatusChanged(self.run_id, status))
        self._draw_status()

    def _draw_status(self) -> None:
        if not self.is_mounted:
            return
        icon, style = STATUS_STYLE[self.status]
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{icon} {self.status.value}", style=style)
        if self.waiting:
            line.append("  ? waiting for your answer", style="bold yellow")
        if self.show_timings:
            end = self.finished_at if self.finished_at is not None else self.clock()
            line.append(f"  {_elapsed(end - self.started_at)}", style="dim")
        if self.attempts:
            line.append(f"  attempt {self.attempts[-1].number}", style="magenta")
        line.append("  ")
        line.append(self.current_model, style="bold")
        self._redraw("#run-status", line, layout=False, toggle=False)  # one line in a fixed width
        detail = Text()
        if len(self.attempts) > 1:
            detail.append(
                " → ".join(
                    f"{a.cli_model_name}{'' if a.verdict is None else (' ✓' if a.ok else f' ✗ {a.verdict}')}"
                    for a in self.attempts
                ),
                style="magenta",
            )
        if self.verdict and self.status.finished:
            if detail:
                detail.append("\n")
            detail.append(self.verdict, style="green" if self.status is RunStatus.SUCCEEDED else "red")
        self._redraw("#run-detail", detail, layout=True)

    def _draw_stats(self) -> None:
        if not self.is_mounted:
            return
        cpu = self.cpu_history[-1]
        text = f"CPU {cpu:3.0f}% RSS {_megabytes(self.rss_bytes):>6}" if self.rss_bytes else "CPU   — RSS      —"
        self._redraw("#run-proc", text, layout=False, toggle=False)
        self.query_one("#run-cpu", Sparkline).data = list(self.cpu_history)

    def _draw_new_lines(self) -> None:
        if not self.is_mounted:
            return
        text = f"↓ {self.unseen_lines:,} new — End to follow" if self.unseen_lines else ""
        self._redraw("#run-new-lines", text, layout=False)

    def _redraw(self, selector: str, content: str | Text, *, layout: bool, toggle: bool = True) -> None:
        """Update a Static only when its content changed (called on every flush and event), shown
        (with ``toggle``) while it has content; ``layout=False`` for a fixed size."""
        if content == self._drawn.get(selector):
            return
        self._drawn[selector] = content
        widget = self.query_one(selector, Static)
        widget.update(content, layout=layout)
        if toggle:
            widget.display = bool(content)

    def action_follow(self) -> None:
        self._log.follow()
        self._draw_new_lines()

    def action_cancel(self) -> None:
        if not self.status.finished:
            self.post_message(self.CancelRequested(self.run_id))
