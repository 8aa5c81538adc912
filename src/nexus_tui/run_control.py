"""The dashboard's runs: starting them, following their events, and what the user does with them.

A mixin of :class:`~nexus_tui.app.NexusApp`: start, cancel, follow up (F6), copy the reply, save
the log, re-run on another model, and the live events a backend posts (:mod:`nexus_tui.live`),
permission questions included: a run's session asks through :meth:`RunControl.asker`, and the
questions of every run are asked one at a time, in order.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work

from nexus_core.errors import NexusError
from nexus_tui import backend
from nexus_tui.live import (
    PermissionAsked,
    PermissionQuestion,
    PermissionReply,
    RunQueued,
    RunStarted,
    TextDelta,
    ToolCallUpdate,
)
from nexus_tui.screens import PermissionScreen
from nexus_tui.widgets.history import HistoryRun
from nexus_tui.widgets.runs import RunStatus, RunView
from nexus_tui.widgets.runs_area import RunsArea, short_title
from nexus_tui.widgets.task import RunRequest

if TYPE_CHECKING:
    from textual.app import App

    from nexus_core.config.watch import ConfigWatcher
    from nexus_core.opencode.serve.events import PermissionAsked as SessionPermissionAsked
    from nexus_core.opencode.serve.session import PermissionAsk

    _AppBase = App[int]  # for the type checker only: the mixin uses the app's API
else:
    _AppBase = object

__all__ = ["RunControl"]


class RunControl(_AppBase):
    """Run management for the app (mixed into :class:`~nexus_tui.app.NexusApp`, whose widgets it uses).

    Message handlers are named ``on_<message>``: ``@on`` is only collected from Textual classes.
    """

    runs: dict[str, backend.RunHandle]
    requests: dict[str, RunRequest]
    last_saved_log: Path | None
    # Set by NexusApp.__init__.
    project_dir: Path
    env: dict[str, str]
    clock: Callable[[], float]
    test_mode: bool
    watcher: ConfigWatcher | None
    state: backend.DashboardState | None
    servers: backend.Servers

    def _init_runs(self) -> None:
        self.runs = {}
        self.requests = {}
        self.servers = backend.Servers()
        self._run_numbers = count(1)
        self._questions: deque[PermissionQuestion] = deque()
        self._asking: PermissionQuestion | None = None
        self._withdrawn: set[str] = set()
        self._continuations: dict[str, tuple[str, str | None]] = {}

    @property
    def runs_area(self) -> RunsArea:
        # The dashboard's own screen: a modal (a permission question) may be the active one.
        return self.screen_stack[0].query_one("#runs-area", RunsArea)

    def run_view(self, run_id: str) -> RunView | None:
        """The view of ``run_id``, if its tab is open."""
        if not self.screen_stack:  # the app is shutting down: its screens are gone
            return None
        return next(iter(self.screen_stack[0].query(f"#{run_id}-view").results(RunView)), None)

    def start_run(self, request: RunRequest) -> str | None:
        """Start ``request`` and open its tab; the run id, or None (with a toast saying why) when refused.

        Synchronous, so the task editor learns at once whether to let go of the text: keys typed
        right after Enter are handled after this returns. The tab is mounted a moment later; the
        view queues what arrives meanwhile.
        """
        if self.state is None:
            self.notify("The config is not loaded yet; wait a moment and press Enter again.", severity="warning")
            return None
        run_id: list[str] = []  # known once the view exists: the run may be refused first
        try:
            handle = backend.start_run(
                self.state, request, self.env, self.project_dir, servers=self.servers, ask=self.asker(run_id)
            )
        except NexusError as exc:
            self.notify(exc.sentence(), title="Cannot run", severity="error", timeout=10)
            return None
        view = self.new_run_view(request.task)
        run_id.append(view.run_id)
        self.runs[view.run_id] = handle
        self.requests[view.run_id] = request
        # The worker first, so that OpenCode is spawning while the tab mounts.
        self.drive_run(view.run_id, handle, view)
        self.runs_area.queue(view)
        return view.run_id

    def new_run_view(self, task: str) -> RunView:
        """The view for the next run (not mounted yet)."""
        run_id = f"run-{next(self._run_numbers)}"
        return RunView(run_id, task, clock=self.clock, show_timings=not self.test_mode, id=f"{run_id}-view")

    async def show_run_view(self, view: RunView, label: str = "") -> None:
        """Mount ``view`` in a new tab and make it the active one (``label`` is kept for callers' sake)."""
        await self.runs_area.add(view)

    @work(group="runs", exit_on_error=False)
    async def drive_run(self, run_id: str, handle: backend.RunHandle, view: RunView) -> None:
        """Pass the run's events to its view until it ends."""
        refused: str | None = None
        if handle.waits_for_server:
            view.write_lines(["◌ queued: starting OpenCode's server for this directory"])
        # A serve run has no process of its own: the view shows its server's tree (shared by the
        # runs in that directory), sampled here as `opencode run`'s adapter samples its process.
        sampler = asyncio.create_task(_sample_server(handle, view))
        try:
            async for event in handle.events():
                view.feed(event)
        except NexusError as exc:
            refused = exc.sentence()
        finally:
            sampler.cancel()
            status, verdict = (RunStatus.FAILED, refused) if refused else handle.verdict()
            view.finish(status, verdict)
            view.allow_follow_up(handle.session_id is not None)
            if self.watcher is not None:
                for model_id in handle.rate_limited_models():
                    self.watcher.note_rate_limit(model_id)

    def on_run_view_status_changed(self, message: RunView.StatusChanged) -> None:
        view = self.run_view(message.run_id)
        if view is not None:
            self.runs_area.relabel(view)

    def on_run_view_cancel_requested(self, message: RunView.CancelRequested) -> None:
        self.cancel_run(message.run_id)

    def cancel_run(self, run_id: str) -> None:
        """End a run's whole process tree (its view shows it as cancelled)."""
        handle = self.runs.get(run_id)
        if handle is not None and not handle.finished:
            view = self.run_view(run_id)
            if view is not None:
                view.set_status(RunStatus.CANCELLING)
            handle.cancel()

    def action_cancel_active_run(self) -> None:
        """Cancel the run whose tab is in view."""
        view = self.runs_area.active_view
        if view is not None and view.run_id in self.running:
            self.cancel_run(view.run_id)
        else:
            self.notify("No run in progress in the tab in view.", severity="warning", timeout=3)

    @property
    def running(self) -> list[str]:
        """Ids of the runs still in progress."""
        return [run_id for run_id, handle in self.runs.items() if not handle.finished]

    # Follow-ups --------------------------------------------------------------------------

    def action_follow_up(self) -> None:
        """F6: into the follow-up box of the run in view (once it has ended with a session)."""
        view = self._view_in_view()
        if view is None:
            return
        handle = self.runs.get(view.run_id)
        if handle is None and isinstance(view, HistoryRun):
            view.action_continue_session()  # a past run: its stored session, when OpenCode still has it
            return
        if handle is not None and not handle.finished:
            self.notify("That run is still going: F6 works once it has ended.", severity="warning", timeout=4)
        elif handle is None or handle.session_id is None:
            self.notify("That run has no OpenCode session to go on in.", severity="warning", timeout=4)
        else:
            view.allow_follow_up(True)
            view.follow_up_box.focus()

    def continue_session(self, session_id: str, model: str | None, task: str) -> None:
        """F6 on a past run (History): its follow-up box takes the text for its stored OpenCode session."""
        view = self.runs_area.active_view
        if not isinstance(view, HistoryRun) or view.stored.session_id != session_id:
            self.notify("Open that past run first (History, Enter), then press F6.", severity="warning", timeout=4)
            return
        self._continuations[view.run_id] = (session_id, model)
        view.allow_follow_up(True)
        view.follow_up_box.focus()

    def on_run_view_follow_up(self, message: RunView.FollowUp) -> None:
        self.follow_up(message.run_id, message.text)

    def follow_up(self, run_id: str, text: str) -> bool:
        """Send ``text`` into the session of ``run_id`` (ended); its view goes on under a separator."""
        view = self.run_view(run_id)
        previous = self.runs.get(run_id)
        if view is not None and previous is None and run_id in self._continuations and self.state is not None:
            session_id, model = self._continuations[run_id]
            try:
                handle = backend.start_continuation(
                    self.state,
                    session_id,
                    model,
                    text,
                    self.env,
                    self.project_dir,
                    servers=self.servers,
                    ask=self.asker([run_id]),
                )
            except NexusError as exc:
                self.notify(exc.sentence(), title="Cannot continue", severity="error", timeout=10)
                return False
            self.runs[run_id] = handle
            view.begin_follow_up(text)
            self.drive_run(run_id, handle, view)
            return True
        if view is None or previous is None or not previous.finished or self.state is None:
            self.notify("That run cannot take a follow-up now.", severity="warning", timeout=4)
            return False
        try:
            handle = backend.start_follow_up(
                self.state, previous, text, self.project_dir, servers=self.servers, ask=self.asker([run_id])
            )
        except NexusError as exc:
            self.notify(exc.sentence(), title="Cannot follow up", severity="error", timeout=10)
            return False
        self.runs[run_id] = handle
        view.begin_follow_up(text)
        self.drive_run(run_id, handle, view)
        return True

    # What the user does with a run ---------------------------------------------------------

    def _view_in_view(self) -> RunView | None:
        view = self.runs_area.active_view
        if view is None:
            self.notify("No run in view: start one with Enter in the task box.", severity="warning", timeout=3)
        return view

    def action_copy_reply(self) -> None:
        """Copy the answer of the run in view to the clipboard (OSC 52, so it works over ssh too)."""
        view = self._view_in_view()
        if view is None:
            return
        reply = view.reply_text
        if not reply:
            self.notify("That run has no answer yet.", severity="warning", timeout=3)
            return
        self.copy_to_clipboard(reply)
        self.notify(f"Copied the reply of run {view.number} ({len(reply):,} characters).", timeout=4)

    def action_save_log(self) -> None:
        """Write the log of the run in view to a file under the state directory, and say where."""
        view = self._view_in_view()
        if view is None:
            return
        state_home = Path(self.env.get("XDG_STATE_HOME") or Path(self.env.get("HOME", "~")) / ".local" / "state")
        folder = state_home.expanduser() / "nexus" / "logs"
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{view.run_id}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(view.log_widget.text + "\n", encoding="utf-8")
            os.chmod(path, 0o600)
        except OSError as exc:
            self.notify(
                f"Cannot write {path}: {exc.strerror or exc}. Check that folder's permissions.",
                severity="error",
                timeout=8,
            )
            return
        self.last_saved_log = path
        self.notify(f"Saved the log of run {view.number} to {path}", title="Log saved", timeout=8)

    def action_rerun(self) -> None:
        """Run the task of the run in view again, on a model picked from the list."""
        view = self._view_in_view()
        if view is None or self.state is None:
            return
        request = self.requests.get(view.run_id, RunRequest(task=view.task_text))
        commands: list[tuple[str, Any, str]] = []
        for model in self.state.registry.models:
            reason = self.state.unavailable.get(model.id)
            commands.append(
                (
                    model.id,
                    lambda model_id=model.id: self.start_run(replace(request, model_id=model_id)),
                    f"{model.cli_model_name or '—'}" + (f" — {reason}" if reason else ""),
                )
            )
        self.search_commands(commands, placeholder=f"Re-run “{short_title(view.task_text)}” on…")

    # Live events from a streaming backend --------------------------------------------------

    def on_run_queued(self, message: RunQueued) -> None:
        view = self.run_view(message.run_id)
        if view is not None:
            view.set_status(RunStatus.QUEUED)
            if message.reason:
                view.write_lines([f"◌ queued: {message.reason}"])

    def on_run_started(self, message: RunStarted) -> None:
        view = self.run_view(message.run_id)
        if view is not None and view.status is RunStatus.QUEUED:
            view.set_status(RunStatus.RUNNING)

    def on_text_delta(self, message: TextDelta) -> None:
        view = self.run_view(message.run_id)
        if view is not None:
            view.stream_text(message.delta, reasoning=message.reasoning)

    def on_tool_call_update(self, message: ToolCallUpdate) -> None:
        view = self.run_view(message.run_id)
        if view is not None:
            view.tool_call(
                message.call_id,
                message.tool,
                message.state,
                title=message.title,
                output=message.output,
                error=message.error,
            )

    def asker(self, run_id: list[str]) -> PermissionAsk:
        """The callback a run's session asks its permission questions through (``run_id[0]`` names the run).

        The question joins the queue; the answer comes back when the user gives it. A question the
        session stops waiting for (the run was cancelled, or nobody answered in time) is withdrawn.
        """

        async def ask(event: SessionPermissionAsked) -> PermissionReply:
            answered: asyncio.Future[PermissionReply] = asyncio.get_running_loop().create_future()

            def answer(reply: PermissionReply) -> None:
                if not answered.done():
                    answered.set_result(reply)

            question = PermissionQuestion(
                run_id=run_id[0] if run_id else "run-0",
                tool=event.permission or "a tool",
                detail=", ".join(event.patterns),
                answer=answer,
            )
            self.post_message(PermissionAsked(question))
            try:
                return await answered
            finally:
                # Cancelling this coroutine cancels the future it awaits: only a result is an answer.
                if answered.cancelled() or not answered.done():
                    self._withdraw(question)

        return ask

    def _withdraw(self, question: PermissionQuestion) -> None:
        """The run stopped waiting for ``question``: off the queue, or off the screen."""
        self._withdrawn.add(question.question_id)
        if question in self._questions:
            self._questions.remove(question)
            self._waiting_changed(question)
        elif (
            self._asking is question and isinstance(self.screen, PermissionScreen) and self.screen.question is question
        ):
            self.screen.dismiss(None)

    def _waiting_changed(self, question: PermissionQuestion) -> None:
        view = self.run_view(question.run_id)
        if view is not None:
            view.set_waiting(any(q.run_id == question.run_id for q in self._questions))
        if self._asking is not None and isinstance(self.screen, PermissionScreen):
            self.screen.set_queued(len(self._questions))

    def on_permission_asked(self, message: PermissionAsked) -> None:
        question = message.question
        if question.question_id in self._withdrawn:
            return
        self._questions.append(question)
        view = self.run_view(question.run_id)
        if view is not None:
            view.set_waiting(True)
            view.write_lines([f"? permission asked: {question.tool} {question.detail}".rstrip()])
        if self._asking is not None and isinstance(self.screen, PermissionScreen):
            self.screen.set_queued(len(self._questions))
        self._ask_next()

    @property
    def questions_waiting(self) -> int:
        """Permission questions not answered yet (the one on screen included)."""
        return len(self._questions) + (self._asking is not None)

    def _ask_next(self) -> None:
        if self._asking is not None or not self._questions:
            return
        question = self._asking = self._questions.popleft()
        view = self.run_view(question.run_id)
        title = short_title(view.task_text) if view is not None else ""
        screen = PermissionScreen(question, run_title=title, queued=len(self._questions))
        self.push_screen(screen, lambda reply: self._answered(question, reply))

    def _answered(self, question: PermissionQuestion, reply: PermissionReply | None) -> None:
        reply = reply or "reject"
        self._asking = None
        withdrawn = question.question_id in self._withdrawn
        view = self.run_view(question.run_id)
        if view is not None:
            still = any(q.run_id == question.run_id for q in self._questions)
            view.set_waiting(still)
            words = {"once": "allowed once", "always": "allowed always (this session)", "reject": "rejected"}
            said = "withdrawn (the run stopped waiting)" if withdrawn else words[reply]
            view.write_lines([f"  → {question.tool}: {said}"])
        if not withdrawn:
            self.run_worker(self._send_answer(question, reply), group="permission", exit_on_error=False)
        self._ask_next()

    @staticmethod
    async def _send_answer(question: PermissionQuestion, reply: PermissionReply) -> None:
        result = question.answer(reply)
        if inspect.isawaitable(result):
            await result


async def _sample_server(handle: backend.RunHandle, view: RunView, interval_s: float = 1.0) -> None:
    """Feed ``view`` a sample of the run's server tree every ``interval_s`` while the run goes on."""
    from nexus_core.opencode.process import sample_tree

    known: dict[int, Any] = {}
    while not handle.finished:
        await asyncio.sleep(interval_s)
        pid = handle.server_pid
        if pid is None:
            continue
        stats = await asyncio.to_thread(sample_tree, pid, known)
        if stats is not None and not handle.finished:
            view.feed(stats)
