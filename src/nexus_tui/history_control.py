"""The dashboard's past runs: list them, replay one, re-run or continue it (a mixin of the app).

At start (after the first frame) one bounded read of the run store fills the History tab and the
task editor's Up/Down recall (:mod:`nexus_tui.history`). Enter on a listed run opens its replay
(:class:`~nexus_tui.widgets.history.HistoryRun`), or brings its live tab into view when it is one
of this dashboard's own runs. The list is read again whenever the History tab comes into view.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual import work

from nexus_tui.history import HistoryEntry, StoreTaskHistory, load_past_runs, load_stored_run
from nexus_tui.widgets.history import HistoryPanel, HistoryRun
from nexus_tui.widgets.runs_area import RunsArea
from nexus_tui.widgets.task import RunRequest

__all__ = ["HistoryControl"]


class HistoryControl:
    """History for the app (mixed into :class:`~nexus_tui.app.NexusApp`, whose runs and widgets it uses)."""

    task_history: StoreTaskHistory
    env: dict[str, str]
    project_dir: Path
    runs: dict[str, Any]
    requests: dict[str, RunRequest]
    runs_area: RunsArea

    def _init_history(self) -> None:
        self.task_history = StoreTaskHistory()
        self.history_loaded = asyncio.Event()
        self._tasks_loaded = False
        self._history_reading = False

    @property
    def own_store_ids(self) -> set[str]:
        """The run store ids of the runs this dashboard started."""
        return {handle.run_id for handle in self.runs.values() if getattr(handle, "run_id", None)}

    @work(group="history", exit_on_error=False)
    async def load_history(self, bring_into_view: bool = False) -> None:
        """Read the project's past runs (bounded) into the History tab and, once, the editor's recall.

        The tab is added when there are past runs; ``bring_into_view`` then shows it (or says there
        are none). A read asked for while one is under way is dropped, never cancelled (that could
        cut the tab's mounting short): the list is read again when the tab next comes into view.
        """
        if self._history_reading:
            return
        self._history_reading = True
        try:
            past = await asyncio.to_thread(load_past_runs, self.env, self.project_dir)
            if not self._tasks_loaded:
                self._tasks_loaded = True
                self.task_history.load(past.tasks)
            area = self.runs_area
            panel = area.history
            if past.entries and panel is None:
                panel = await area.show_history()
            if panel is not None:
                panel.show(past.entries, here=self.own_store_ids)
            if bring_into_view:
                if panel is None:
                    self.notify("No runs of this project in the run store yet.", timeout=4)  # type: ignore[attr-defined]
                else:
                    area.action_history()
        finally:
            self._history_reading = False
            self.history_loaded.set()

    def on_runs_area_history_shown(self, message: RunsArea.HistoryShown) -> None:
        self.load_history()

    def action_history(self) -> None:
        """Bring the History tab into view (reading the store first when it has none yet)."""
        if self.runs_area.history is None:
            self.load_history(bring_into_view=True)
            return
        self.runs_area.action_history()

    async def on_history_panel_opened(self, message: HistoryPanel.Opened) -> None:
        entry = message.entry
        area = self.runs_area
        for view in area.views:
            live = self.runs.get(view.run_id)
            if live is not None and getattr(live, "run_id", None) == entry.run_id:
                area.tabs.active = view.run_id
                view.log_widget.focus()
                return
            if isinstance(view, HistoryRun) and view.stored_id == entry.run_id:
                if view.stored.entry.status == entry.status and entry.status != "running":
                    area.tabs.active = view.run_id
                    view.log_widget.focus()
                    return
                await area.close([view.run_id])  # its run has moved on since: replay it afresh
        self.open_past_run(entry)

    @work(group="history-open", exit_on_error=False)
    async def open_past_run(self, entry: HistoryEntry) -> HistoryRun | None:
        """Replay ``entry``'s stored events in a new read-only tab."""
        stored = await asyncio.to_thread(load_stored_run, self.env, entry.run_id)
        if stored is None:
            self.notify(  # type: ignore[attr-defined]
                "That run is no longer in the run store (pruned); the list is read again.", severity="warning"
            )
            self.load_history()
            return None
        number = next(self._run_numbers)  # type: ignore[attr-defined]
        view = HistoryRun(
            f"run-{number}",
            stored,
            clock=self.clock,  # type: ignore[attr-defined]
            show_timings=not self.test_mode,  # type: ignore[attr-defined]
            id=f"run-{number}-view",
        )
        workdir = Path(entry.workdir) if entry.workdir and Path(entry.workdir) != self.project_dir else None
        self.requests[view.run_id] = RunRequest(
            task=entry.task, model_id=self._known_model(stored.model_id), workdir=workdir
        )
        await self.show_run_view(view)  # type: ignore[attr-defined]
        view.flush()
        view.log_widget.focus()
        return view

    def _known_model(self, model_id: str | None) -> str | None:
        state = getattr(self, "state", None)
        if model_id is None or state is None:
            return None
        return model_id if state.registry.find(model_id) is not None else None

    def on_history_run_rerun_requested(self, message: HistoryRun.RerunRequested) -> None:
        view = message.view
        if message.model is None:
            self.action_rerun()  # type: ignore[attr-defined]
            return
        if self._known_model(message.model) is None:
            self.notify(  # type: ignore[attr-defined]
                f"{message.model} is not in the registry now; r picks another model.", severity="warning", timeout=6
            )
            return
        request = self.requests.get(view.run_id, RunRequest(task=view.task_text))
        self.start_run(replace(request, model_id=message.model))  # type: ignore[attr-defined]

    def on_history_run_continue_requested(self, message: HistoryRun.ContinueRequested) -> None:
        # Follow-ups (F6) are sent by the app's ``continue_session`` where it has one.
        follow_up = getattr(self, "continue_session", None)
        if callable(follow_up):
            follow_up(message.session_id, message.model, message.task)
            return
        self.notify(  # type: ignore[attr-defined]
            f"Continuing a past session from the dashboard is not available yet: "
            f'`nexus-agents orchestrate --continue {message.session_id} "…"` continues it; R re-runs the task here.',
            title="Continue",
            timeout=12,
        )
