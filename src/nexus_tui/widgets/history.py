"""Past runs: the History tab's list, and a read-only replay of one run in its own tab.

The list shows this project's newest runs (status, start, task, model); Enter on a row opens a
:class:`HistoryRun`, which replays the run's stored events and final text. From there ``r``
re-runs the task on a model picked from the list, ``R`` on the same model, and F6 asks to
continue the run's OpenCode session (:class:`HistoryRun.ContinueRequested`, for whoever sends
follow-ups).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from nexus_tui.history import HistoryEntry, StoredRun
from nexus_tui.widgets.runs import RunStatus, RunView, event_lines

__all__ = ["HistoryPanel", "HistoryRun", "replay", "status_cell", "took"]

# The store's status → (icon, word, style) in the list.
STATUS_CELLS = {
    "ok": ("✓", "ok", "green"),
    "failed": ("✗", "failed", "red"),
    "cancelled": ("■", "cancelled", "yellow"),
    "interrupted": ("⚠", "interrupted", "magenta"),
    "running": ("●", "running elsewhere", "cyan"),
}
_RUN_STATUS = {
    "ok": RunStatus.SUCCEEDED,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
    "interrupted": RunStatus.FAILED,
}
_MIN_TASK = 20
_MODEL_MIN_WIDTH = 90  # below this the model column gives its room to the task


def status_cell(status: str, *, here: bool = False) -> Text:
    """``● running`` (this dashboard's), ``● running elsewhere``, ``⚠ interrupted``, ``✓ ok``, …"""
    icon, word, style = STATUS_CELLS.get(status, ("?", status, ""))
    if status == "running" and here:
        word = "running here"
    return Text(f"{icon} {word}", style=style, no_wrap=True)


def took(entry: HistoryEntry) -> str:
    """How long the run took (``-`` while it runs)."""
    if entry.finished_at is None:
        return "-"
    seconds = max(0.0, entry.finished_at - entry.started_at)
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def started(entry: HistoryEntry) -> str:
    """The start as local ``MM-DD HH:MM``."""
    return time.strftime("%m-%d %H:%M", time.localtime(entry.started_at))


def _one_line(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(1, width - 1)] + "…"


class HistoryPanel(Vertical):
    """This project's past runs, newest first. Enter opens one (:class:`Opened`)."""

    DEFAULT_CSS = """
    HistoryPanel {
        height: 1fr;
    }
    HistoryPanel #history-hint {
        height: 1;
        padding: 0 1;
    }
    HistoryPanel #history-table {
        height: 1fr;
        overflow-x: hidden;
    }
    """

    class Opened(Message):
        """The user opened a past run."""

        def __init__(self, entry: HistoryEntry) -> None:
            super().__init__()
            self.entry = entry

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: tuple[HistoryEntry, ...] = ()
        self.here: frozenset[str] = frozenset()
        # The width the columns were laid out for (they are laid out again on a resize).
        self.drawn_width = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="history-hint")
        table: DataTable[str | Text] = DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        yield table

    @property
    def table(self) -> DataTable[str | Text]:
        return self.query_one("#history-table", DataTable)

    def show(self, entries: Sequence[HistoryEntry], here: Iterable[str] = ()) -> None:
        """Draw ``entries`` (newest first); ``here`` are the store ids of this dashboard's own runs."""
        self.entries = tuple(entries)
        self.here = frozenset(here)
        self._draw()

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self, event: events.Resize) -> None:
        self._draw()

    def _draw(self) -> None:
        if not self.is_mounted or not self.query("#history-table"):
            return
        table = self.table
        row = table.cursor_row
        table.clear(columns=True)
        width = self.drawn_width = self.size.width or 80
        with_model = width >= _MODEL_MIN_WIDTH
        entries = self.entries
        models = [entry.model or "-" for entry in entries]
        # Every width is set here: auto-sized columns are measured a frame later, so a shot (or a
        # slow machine) could catch them at their labels' width.
        model_width = max(5, min(28, max((len(m) for m in models), default=1))) if with_model else 0
        status_width = max((len(status_cell(e.status, here=e.run_id in self.here)) for e in entries), default=6)
        took_width = max(4, max((len(took(e)) for e in entries), default=1))
        started_width = 11
        # Each column takes its cell padding (1 a side); the rest is the task's.
        fixed = status_width + started_width + took_width + model_width + 2 * (5 if with_model else 4) + 2
        task_width = max(_MIN_TASK, width - fixed)
        table.add_column("status", key="status", width=max(6, status_width))
        table.add_column("started", key="started", width=started_width)
        table.add_column("task", key="task", width=task_width)
        table.add_column("took", key="took", width=took_width)
        if with_model:
            table.add_column("model", key="model", width=model_width)
        for entry, model in zip(entries, models, strict=True):
            cells: list[str | Text] = [
                status_cell(entry.status, here=entry.run_id in self.here),
                started(entry),
                _one_line(entry.task, task_width),
                took(entry),
            ]
            if with_model:
                cells.append(_one_line(model, model_width))
            table.add_row(*cells, key=entry.run_id)
        if entries:
            table.move_cursor(row=min(row, len(entries) - 1))
        count = len(entries)
        hint = f"{count} past run{'s' if count != 1 else ''} of this project, newest first · Enter replays one"
        self.query_one("#history-hint", Static).update(Text(hint, style="dim", no_wrap=True, overflow="ellipsis"))

    @on(DataTable.RowSelected, "#history-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        entry = next((e for e in self.entries if e.run_id == event.row_key.value), None)
        if entry is not None:
            self.post_message(self.Opened(entry))


def replay(view: RunView, events: Iterable[Any], final_text: str = "") -> None:
    """Feed stored events to ``view`` as they were shown live; the final text when no text event carried it."""
    from nexus_core.opencode.events import Text as TextEvent

    saw_text = False
    for event in events:
        kind = getattr(event, "kind", "")
        if kind == "text_delta":
            saw_text = True
            view.stream_text(event.delta)
        elif kind == "reasoning_delta":
            view.stream_text(event.delta, reasoning=True)
        elif kind == "tool_state":
            view.tool_call(
                event.call_id or f"stored-{id(event)}",
                event.tool,
                event.status,
                title=event.title,
                output=event.output,
                error=event.error,
            )
        elif kind in ("session_retry", "permission_asked", "permission_replied"):
            view.write_lines(event_lines(event))  # the live view leaves these to RunControl
        elif kind in ("session_idle", "stats"):
            continue
        else:
            saw_text = saw_text or kind == "text"
            view.feed(event)
    if not saw_text and final_text:
        view.feed(TextEvent(text=final_text))


class HistoryRun(RunView):
    """A past run replayed read-only: ``r`` re-runs it on a picked model, ``R`` on the same one, F6 continues it."""

    read_only = True

    BINDINGS = [
        Binding("R", "rerun_same", "Re-run same model", id="history.rerun_same"),
        Binding("f6", "continue_session", "Continue", id="history.continue"),
    ]

    class ContinueRequested(Message):
        """Continue the past run's OpenCode session with a follow-up (sent by whoever sends follow-ups)."""

        def __init__(self, session_id: str, model: str | None, task: str, stored_id: str) -> None:
            super().__init__()
            self.session_id = session_id
            self.model = model
            self.task = task
            self.stored_id = stored_id

    class RerunRequested(Message):
        """Run the past run's task again on ``model`` (None: on a model the user picks)."""

        def __init__(self, view: HistoryRun, model: str | None) -> None:
            super().__init__()
            self.view = view
            self.model = model

    def __init__(
        self,
        run_id: str,
        stored: StoredRun,
        *,
        clock: Callable[[], float] = time.monotonic,
        show_timings: bool = True,
        id: str | None = None,
    ) -> None:
        super().__init__(run_id, stored.entry.task, clock=clock, show_timings=show_timings, id=id)
        self.stored = stored
        entry = stored.entry
        # The elapsed time is the stored run's, not the replay's.
        self.started_at = clock() - max(0.0, (entry.finished_at or time.time()) - entry.started_at)
        keys = "r re-run on… · R same model" + (" · F6 continue its session" if self.can_continue else "")
        self.write_lines([f"⟲ replayed from the run store · started {started(entry)} · {keys}"])
        replay(self, stored.events, stored.final_text)
        if stored.events_dropped:
            self.write_lines([f"({stored.events_dropped:,} events beyond the store's per-run limit were not kept)"])
        if entry.status == "running":
            self.status = RunStatus.RUNNING
            self.write_lines(["● still running in another process: this is what it has stored so far"])
        else:
            self.finish(_RUN_STATUS.get(entry.status, RunStatus.FAILED), self._verdict())
            self.finished_at = self.started_at + max(0.0, (entry.finished_at or entry.started_at) - entry.started_at)

    @property
    def can_continue(self) -> bool:
        """Whether the run left an OpenCode session that may still exist (F6 continues it)."""
        return self.stored.session_id is not None and self.stored.session_exists is not False

    @property
    def stored_id(self) -> str:
        """The run store's id of the run replayed."""
        return self.stored.entry.run_id

    @property
    def label_icon(self) -> str:
        """The tab's icon: the stored status's (``⚠`` interrupted, ``●`` running elsewhere, …)."""
        return STATUS_CELLS.get(self.stored.entry.status, ("?",))[0]

    @property
    def current_model(self) -> str:
        return super().current_model if self.attempts else (self.stored.cli_model_name or self.stored.model_id or "…")

    def _verdict(self) -> str:
        entry = self.stored.entry
        if entry.status == "ok":
            return f"{self.stored.cli_model_name or entry.model or 'the model'} answered in {took(entry)}"
        if entry.status == "interrupted":
            return f"interrupted: {entry.outcome or 'its process ended without finishing it'}"
        return entry.outcome or entry.status

    def action_cancel(self) -> None:
        if not self.status.finished:
            self.notify("That run belongs to another process: it can only be cancelled there.", timeout=5)

    def action_rerun_same(self) -> None:
        self.post_message(self.RerunRequested(self, self.stored.model_id))

    def action_continue_session(self) -> None:
        session = self.stored.session_id
        if session is None or not self.can_continue:
            said = (
                "That run left no OpenCode session to continue"
                if session is None
                else f"OpenCode no longer has that run's session {session}"
            )
            self.notify(f"{said}; R re-runs its task.", timeout=5)
            return
        self.post_message(self.ContinueRequested(session, self.stored.model_id, self.stored.entry.task, self.stored_id))
