"""The Runs panel: one tab per run, labelled with its status and a short title from its task.

Tabs switch with the number keys and ``[``/``]``; ``x`` closes the tab in view and ``X`` clears
every finished one. A closed tab only leaves the screen: the app keeps the run's handle. When the
project has past runs, a History tab comes first (``h`` or ``0`` brings it back); a replayed run
is read-only and closes like a finished one.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from nexus_tui.widgets.history import HistoryPanel
from nexus_tui.widgets.runs import STATUS_STYLE, RunView

__all__ = ["HISTORY_PANE", "TITLE_CHARS", "RunsArea", "short_title", "tab_label"]

TITLE_CHARS = 24
WAITING_ICON = "?"
HISTORY_PANE = "history"


def short_title(task: str, limit: int = TITLE_CHARS) -> str:
    """The task's first non-empty line, whitespace collapsed, cut to ``limit`` characters with an ellipsis."""
    first = next((line for line in task.splitlines() if line.strip()), "")
    words = " ".join(first.split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


def tab_label(view: RunView) -> str:
    """``<icon> <number> <title>``; the icon is ``?`` while the run waits for a permission answer."""
    icon = WAITING_ICON if view.waiting else getattr(view, "label_icon", None) or STATUS_STYLE[view.status][0]
    return f"{icon} {view.number} {short_title(view.task_text)}"


class RunsArea(Vertical):
    """The run tabs, and the line shown while there are none."""

    BINDINGS = [
        *[Binding(str(n), f"switch({n})", f"Run {n}", show=False, id=f"runs.switch_{n}") for n in range(1, 10)],
        Binding("left_square_bracket", "step(-1)", "Previous run", show=False, id="runs.previous"),
        Binding("right_square_bracket", "step(1)", "Next run", show=False, id="runs.next"),
        Binding("x", "close_active", "Close tab", id="runs.close"),
        Binding("X", "clear_finished", "Clear finished", show=False, id="runs.clear_finished"),
        Binding("h,0", "history", "History", show=False, id="runs.history"),
    ]

    class Closed(Message):
        """Run tabs were closed (their runs stay in the app's history)."""

        def __init__(self, run_ids: list[str]) -> None:
            super().__init__()
            self.run_ids = run_ids

    class HistoryShown(Message):
        """The History tab came into view (its list is worth refreshing)."""

    def __init__(self, *children: Widget, **kwargs: Any) -> None:
        super().__init__(*children, **kwargs)
        self._queued: list[RunView] = []

    def compose(self) -> ComposeResult:
        yield Static("No runs yet. Type a task and press Enter; each run gets its own tab here.", id="runs-empty")
        yield TabbedContent(id="runs")

    def on_mount(self) -> None:
        self.border_title = "Runs"
        # The History tab may have come first: it mounts as soon as the store is read.
        if not self.views and self.history is None:
            self.tabs.display = False

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#runs", TabbedContent)

    @property
    def views(self) -> list[RunView]:
        """The run views with a tab, in tab order."""
        return list(self.query(RunView))

    @property
    def active_view(self) -> RunView | None:
        """The run in view, if any."""
        active = self.tabs.active
        return next((view for view in self.views if view.run_id == active), None)

    @property
    def history(self) -> HistoryPanel | None:
        """The History tab's list, once the project has past runs."""
        return next(iter(self.query(HistoryPanel).results(HistoryPanel)), None)

    async def show_history(self) -> HistoryPanel:
        """The History tab (added first, and brought into view when no run has a tab)."""
        panel = self.history
        if panel is not None:
            return panel
        panel = HistoryPanel(id="history-panel")
        tabs = self.tabs
        panes = list(tabs.query(TabPane))
        tabs.display = True
        self.query_one("#runs-empty", Static).display = False
        await tabs.add_pane(TabPane("⟲ History", panel, id=HISTORY_PANE), before=panes[0] if panes else None)
        if not self.views:
            tabs.active = HISTORY_PANE
        return panel

    def action_history(self) -> None:
        """Bring the History tab into view, the cursor in its list."""
        if self.history is not None:
            self.tabs.active = HISTORY_PANE
            self.query_one("#history-table", DataTable).focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == HISTORY_PANE:
            self.post_message(self.HistoryShown())

    async def add(self, view: RunView) -> None:
        """Mount ``view`` in a new tab and bring it into view."""
        await self._mount([view])

    def queue(self, view: RunView) -> None:
        """Mount ``view`` in a new tab in a moment. Views queued in the same moment (runs started
        together) mount together: one layout of the screen for all of them, not one each, so the
        runs already streaming are not held up for a tenth of a second per tab."""
        self._queued.append(view)
        if len(self._queued) == 1:
            self.call_later(self._mount_queued)

    async def _mount_queued(self) -> None:
        views, self._queued = self._queued, []
        if views:
            await self._mount(views)

    async def _mount(self, views: list[RunView]) -> None:
        tabs = self.tabs
        # Every pane is mounted before any is waited for: the screen is laid out once.
        await asyncio.gather(*(tabs.add_pane(TabPane(tab_label(view), view, id=view.run_id)) for view in views))
        tabs.display = True
        self.query_one("#runs-empty", Static).display = False
        tabs.active = views[-1].run_id
        self._draw_count()

    def relabel(self, view: RunView) -> None:
        """Redraw a run's tab label from its status, its waiting state and its title."""
        if view.run_id in {pane.id for pane in self.tabs.query(TabPane)}:
            # The pane and its tab come and go in separate steps (mount, close, the app's exit).
            with contextlib.suppress(NoMatches):
                self.tabs.get_tab(view.run_id).label = tab_label(view)
        self._draw_count()

    async def close(self, run_ids: list[str]) -> None:
        """Remove the tabs of ``run_ids``."""
        closing = [view.run_id for view in self.views if view.run_id in run_ids]
        for run_id in closing:
            await self.tabs.remove_pane(run_id)
        if not self.views and self.history is None:
            self.tabs.display = False
            self.query_one("#runs-empty", Static).display = True
        self._draw_count()
        if closing:
            self.post_message(self.Closed(closing))

    async def action_close_active(self) -> None:
        view = self.active_view
        if view is None:
            return
        if not _closable(view):
            self.notify("That run is still in progress: cancel it first (F8 or c).", severity="warning", timeout=4)
            return
        await self.close([view.run_id])

    async def action_clear_finished(self) -> None:
        finished = [view.run_id for view in self.views if _closable(view)]
        if not finished:
            self.notify("No finished runs to clear.", timeout=3)
            return
        await self.close(finished)

    def action_switch(self, number: int) -> None:
        """Bring the ``number``-th tab (1-based, in tab order) into view."""
        views = self.views
        if 1 <= number <= len(views):
            self._activate(views[number - 1])

    def action_step(self, offset: int) -> None:
        """The previous (-1) or next (+1) tab, wrapping around."""
        views = self.views
        if not views:
            return
        ids = [view.run_id for view in views]
        current = ids.index(self.tabs.active) if self.tabs.active in ids else 0
        self._activate(views[(current + offset) % len(ids)])

    def _activate(self, view: RunView) -> None:
        # Focus follows into the run, so the next key (another number, ``]``) still reaches this panel.
        self.tabs.active = view.run_id
        view.log_widget.focus()

    def _draw_count(self) -> None:
        views = self.views
        running = sum(1 for view in views if not _closable(view))
        waiting = sum(1 for view in views if view.waiting)
        parts = [f"{len(views)} tab{'s' if len(views) > 1 else ''}"] if views else []
        parts += [f"{running} running"] if running else []
        parts += [f"{waiting} waiting for you"] if waiting else []
        self.border_subtitle = " · ".join(parts)


def _closable(view: RunView) -> bool:
    """A finished run's tab, or a replay's (read-only: it runs nothing here), can close."""
    return view.status.finished or getattr(view, "read_only", False)
