"""The nexus dashboard: registry, live score breakdown, concurrent task streams, health, live reload.

Widgets draw and post messages; every call into :mod:`nexus_core` runs in a worker and comes
back as a method call on the widget that draws it (workers share the app's event loop).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, TextArea
from textual.worker import Worker, WorkerState

from nexus_core.errors import NexusError
from nexus_tui import backend
from nexus_tui.history_control import HistoryControl
from nexus_tui.layout import LayoutControl
from nexus_tui.run_control import RunControl
from nexus_tui.screens import ConfirmQuitScreen, DetailsScreen, HelpScreen
from nexus_tui.theme import NEXUS_THEME
from nexus_tui.widgets.editor import TaskEditor
from nexus_tui.widgets.health import HealthPanel
from nexus_tui.widgets.registry import RegistryPanel, registry_rows
from nexus_tui.widgets.runs import RunView
from nexus_tui.widgets.runs_area import RunsArea
from nexus_tui.widgets.task import RunRequest, TaskPanel

if TYPE_CHECKING:
    from nexus_core.config.watch import ConfigWatcher, SnapshotUpdate

__all__ = ["STYLES", "NexusApp"]


def _styles_dir() -> Path:
    """The TCSS folder: ``nexus_tui/styles`` in an installed wheel (see setup.py), else the checkout's ``styles/``
    (an editable install points at ``src/`` and cannot map the top-level folder into the package)."""
    here = Path(__file__).resolve().parent
    installed = here / "styles"
    return installed if installed.is_dir() else here.parents[1] / "styles"


STYLES = _styles_dir()


class NexusApp(HistoryControl, RunControl, LayoutControl, App[int]):
    """The dashboard. ``test_mode`` freezes what changes by itself (cursor blink, elapsed times, timings);
    ``watch_config=False`` loads the config once instead of following edits; ``check_health=False``
    leaves the health checks to the Re-check key (F5; Shift+F5 or F10 probes every model)."""

    CSS_PATH = [
        str(STYLES / name)
        for name in ("app.tcss", "registry.tcss", "task.tcss", "runs.tcss", "health.tcss", "screens.tcss")
    ]
    TITLE = "nexus"
    SUB_TITLE = "delegate coding tasks through OpenCode"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True, id="app.quit"),
        Binding("f1", "help", "Help", id="app.help"),
        Binding("f5", "recheck", "Re-check", id="app.recheck"),
        Binding("shift+f5,f17,f10", "probe", "Probe", key_display="⇧F5", priority=True, id="app.probe"),
        Binding("ctrl+t", "focus_task", "Task", id="app.focus_task"),
        Binding("f8", "cancel_active_run", "Cancel run", id="app.cancel_run"),
        Binding("f6", "follow_up", "Follow-up", show=False, priority=True, id="app.follow_up"),
        Binding("f2", "toggle_models", "Models", priority=True, id="app.toggle_models"),
        Binding("f3", "toggle_task", "Task", show=False, priority=True, id="app.toggle_task"),
        Binding("f4", "toggle_health", "Health", priority=True, id="app.toggle_health"),
        Binding("f7", "zoom", "Zoom", priority=True, id="app.zoom"),
        Binding("f9", "history", "History", show=False, id="app.history"),
        Binding("slash", "filter_models", "Filter", show=False, id="app.filter"),
        Binding("ctrl+f", "filter_models", "Filter", show=False, priority=True, id="app.filter_anywhere"),
    ]

    class ConfigReloaded(Message):
        """A config edit was taken in (``change.state``) or refused with its error (``change.error``)."""

        def __init__(self, change: backend.ConfigChange) -> None:
            super().__init__()
            self.change = change

    def __init__(
        self,
        project_dir: str | os.PathLike[str] | None = None,
        *,
        demo: bool = False,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        test_mode: bool = False,
        watch_config: bool = True,
        check_health: bool = True,
        debounce: float = 0.12,
    ) -> None:
        super().__init__()
        self.project_dir = Path(project_dir or os.getcwd()).resolve()
        self.demo = demo
        self.env: dict[str, str] = dict(os.environ if env is None else env)
        self.clock = clock
        self.test_mode = test_mode
        self.debounce = debounce
        self.watch_config = watch_config
        self.check_health = check_health
        self.watcher: ConfigWatcher | None = None
        self.state: backend.DashboardState | None = None
        self.demo_environment: backend.DemoEnvironment | None = None
        self.last_saved_log: Path | None = None
        self._init_runs()
        self._init_history()
        self._init_layout()
        self.register_theme(NEXUS_THEME)
        self.theme = NEXUS_THEME.name
        if demo:
            self.sub_title = "DEMO — loopback reference gateway, no key needed"

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        if self.demo:
            yield Static(
                "DEMO  ·  a loopback reference gateway answers every model; nothing leaves this machine",
                id="demo-banner",
            )
        yield RegistryPanel(id="registry")
        yield TaskPanel(debounce=self.debounce, history=self.task_history, id="task")
        with Horizontal(id="bottom"):
            yield RunsArea(id="runs-area")
            yield HealthPanel(show_timings=not self.test_mode, id="health")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#registry", RegistryPanel).border_title = "Models"
        if self.test_mode:
            for text_input in self.query(Input):
                text_input.cursor_blink = False
            for text_area in self.query(TextArea):
                text_area.cursor_blink = False
        self.query_one("#task-input", TaskEditor).focus()
        self.query_one("#task", TaskPanel).starter = lambda request: self.start_run(request) is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._terminated)
        loop.add_signal_handler(signal.SIGHUP, self._hung_up)
        self.start()

    def _terminated(self) -> None:
        """SIGTERM: end the runs and clean up as a quit does, without asking."""
        self.run_worker(self.shutdown(), group="shutdown", exclusive=True)

    def _hung_up(self) -> None:
        """SIGHUP, the terminal is gone: clean up, then leave at once.

        Textual's exit would restore a terminal that no longer exists, and its writer blocks on it.
        """

        async def clean_up_and_leave() -> None:
            try:
                await self.release()
            finally:
                os._exit(129)

        self.run_worker(clean_up_and_leave(), group="shutdown", exclusive=True)

    @work(exclusive=True, group="start", exit_on_error=False)
    async def start(self) -> None:
        """Set up demo mode if asked, load the routing state, then check health and watch the config."""
        # After the first frame: the config, routing and store imports and reads must not hold it back.
        drawn = asyncio.Event()
        self.call_after_refresh(drawn.set)
        await drawn.wait()
        if self.demo and self.demo_environment is None:
            from nexus_core.gateway.tour import FAILING_MODEL

            self.demo_environment = await backend.start_demo(self.env)
            self.env = self.demo_environment.env
            self.project_dir = self.demo_environment.project_dir
            self.query_one("#demo-banner", Static).update(
                f"DEMO  ·  gateway {self.demo_environment.gateway.base_url}  ·  try “explain …”, “read …”; "
                f"{FAILING_MODEL} is down (watch the fallback)  ·  edit {self.demo_environment.config_file.name}"
            )
        # After the first frame (the store's imports and query are off its path), for the project now in force.
        self.call_after_refresh(self.load_history)
        if self.watch_config:
            self.watcher = backend.open_watcher(self.project_dir, self.env)
            snapshot = await self.watcher.start()
            if snapshot is not None:
                self.apply_state(backend.DashboardState(snapshot))
            elif self.watcher.error is not None:
                self.show_config_error(
                    backend.config_error_sentence(self.watcher.error, self.project_dir, self.env, kept=False)
                )
            self.follow_config(self.watcher.updates())
        else:
            try:
                self.apply_state(await backend.load_state(self.project_dir, self.env))
            except NexusError as exc:
                self.show_config_error(exc.sentence())
        if self.check_health:
            self.run_doctor()
        backend.warm_up()

    def show_config_error(self, sentence: str) -> None:
        """A config file does not parse: a toast, and a line above the registry until it is fixed."""
        self.notify(sentence, title="Config", severity="error", timeout=15)
        self.query_one("#registry", RegistryPanel).show_config_error(sentence)

    def apply_state(self, state: backend.DashboardState) -> None:
        """Draw a (new) routing state: the table in place, the breakdown for the current text."""
        self.state = state
        self.query_one("#registry", RegistryPanel).show_config_error(None)
        self.query_one("#registry", RegistryPanel).show(
            registry_rows(state.registry, state.unavailable), state.problems
        )
        self.score(self.query_one("#task-input", TaskEditor).text)

    # Routing -----------------------------------------------------------------------------

    @on(TaskPanel.ScoreWanted)
    def _score_wanted(self, message: TaskPanel.ScoreWanted) -> None:
        self.score(message.task)

    @work(exclusive=True, group="score", exit_on_error=False)
    async def score(self, task: str) -> None:
        """Score every model for ``task`` and draw the breakdown."""
        if self.state is None:
            return
        self.query_one("#task", TaskPanel).show(backend.score(self.state, task))

    # Runs --------------------------------------------------------------------------------

    def start_run(self, request: RunRequest) -> str | None:
        """Start ``request`` (see :class:`RunControl`); a toast first when its working directory's config
        is not the project's (the run is routed with the config OpenCode reads there)."""
        run_id = super().start_run(request)
        handle = self.runs.get(run_id) if run_id is not None else None
        note = handle.config_note if handle is not None else None
        if note:
            self.notify(note, title="Working directory", severity="warning", timeout=15)
        return run_id

    @on(RunView.StatusChanged)
    def _run_ended(self, message: RunView.StatusChanged) -> None:
        # What the run observed (a model resting after "model not found", an unreachable gateway)
        # shows in the registry and the breakdown at once, with its reason.
        if message.status.finished and self.state is not None:
            self.apply_state(self.state)

    # Health ------------------------------------------------------------------------------

    @work(exclusive=True, group="doctor", exit_on_error=False)
    async def run_doctor(self, probe: bool = False) -> None:
        """Run doctor's checks (with ``probe``, also its probes of every model), draw them, and route by them."""
        panel = self.query_one("#health", HealthPanel)
        panel.checking(probe)
        try:
            health = await backend.health(self.project_dir, self.env, self.state, probe=probe)
        except NexusError as exc:
            panel.failed_to_check(exc.sentence())
            return
        panel.show(health.report)
        if self.watcher is not None:
            # Routing then knows which models the gateway serves (a model it lacks becomes unavailable).
            for provider_id, model_ids in health.gateway_models.items():
                self.watcher.note_gateway_models(provider_id, model_ids)
        elif self.state is not None:
            self.state = backend.with_gateway_models(self.state, health.gateway_models)
        if self.state is not None:
            # The registry and the breakdown show what the check marked unavailable (or put back).
            self.apply_state(self.state)

    def action_recheck(self) -> None:
        """F5: the doctor's checks (config, key, gateway, models), no request to a model."""
        self.run_doctor()

    def action_probe(self) -> None:
        """Shift+F5 (F10): the checks and a streamed chat probe of every model, then an ``opencode run`` smoke."""
        self.run_doctor(probe=True)

    @on(HealthPanel.DetailsWanted)
    def _health_check_details(self, message: HealthPanel.DetailsWanted) -> None:
        check = self.query_one("#health", HealthPanel).check(message.check_id)
        if check is not None:
            self.push_screen(DetailsScreen(f"Health check {check.check_id}", check.full_text()))

    # Reload ------------------------------------------------------------------------------

    @work(exclusive=True, group="watch", exit_on_error=False)
    async def follow_config(self, updates: AsyncIterator[SnapshotUpdate]) -> None:
        """Follow config edits: a new state with a diff toast, or the error with the last good state kept."""
        async for update in updates:
            change = backend.change_of(update, self.project_dir, self.env)
            if change.error is not None:
                self.show_config_error(change.error)
                self.post_message(self.ConfigReloaded(change))
                continue
            assert change.state is not None
            self.apply_state(change.state)
            self.post_message(self.ConfigReloaded(change))
            if change.only_availability:
                continue
            self.notify(change.summary, title="Config reloaded", timeout=6)
            # A running OpenCode server has read the old config: each ends with its last run.
            await self.servers.refresh()
            if self.check_health:
                self.run_doctor()

    # Commands ----------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand("Run task", "Run the task in the task box on the chosen model", self.action_run_task)
        yield SystemCommand("Pick model", "Choose the model for the next run", self.action_pick_model)
        yield SystemCommand("Re-check", "Run the health checks (doctor) again (F5)", self.action_recheck)
        yield SystemCommand(
            "Probe models",
            "Health checks and a chat probe of every model, then an opencode run smoke (Shift+F5 or F10)",
            self.action_probe,
        )
        yield SystemCommand("Open config path", "Open an OpenCode config file in your editor", self.action_open_config)
        yield SystemCommand("Zoom run", "Show the run in view full screen, or go back (F7)", self.action_zoom)
        yield SystemCommand("Collapse models", "Collapse or expand the Models panel (F2)", self.action_toggle_models)
        yield SystemCommand("Collapse task", "Collapse or expand the Task breakdown (F3)", self.action_toggle_task)
        yield SystemCommand("Toggle health", "Show or hide the Health panel (F4)", self.action_toggle_health)
        yield SystemCommand("Health details", "Every health check in full, failures first", self.action_health_details)
        yield SystemCommand(
            "Follow up", "Send a follow-up into the session of the run in view (F6)", self.action_follow_up
        )
        yield SystemCommand("Copy reply", "Copy the answer of the run in view (y)", self.action_copy_reply)
        yield SystemCommand("Save log", "Save the log of the run in view to a file (s)", self.action_save_log)
        yield SystemCommand(
            "Re-run on another model", "The run in view's task on a model you pick (r)", self.action_rerun
        )
        yield SystemCommand("Close run tab", "Close the finished run in view (x)", self.runs_area.action_close_active)
        yield SystemCommand(
            "Clear finished runs", "Close every finished run's tab (X)", self.runs_area.action_clear_finished
        )
        yield SystemCommand(
            "History", "This project's past runs: replay, re-run, continue (F9, h)", self.action_history
        )
        yield SystemCommand("Help", "Keys and panels", self.action_help)
        yield from super().get_system_commands(screen)

    def action_health_details(self) -> None:
        """Every health check with its whole summary and fix, failures first."""
        panel = self.query_one("#health", HealthPanel)
        self.push_screen(DetailsScreen("Health checks", panel.details()))

    async def action_run_task(self) -> None:
        editor = self.query_one("#task-input", TaskEditor)
        editor.focus()
        if editor.text.strip():
            editor.action_submit()
        else:
            self.notify("Type a task in the task box first.", severity="warning")

    def action_pick_model(self) -> None:
        if self.state is None:
            return
        panel = self.query_one("#task", TaskPanel)
        commands = [("Automatic: the top-ranked model", lambda: panel.pick(None), "back to automatic routing")]
        for model in self.state.registry.models:
            reason = self.state.unavailable.get(model.id)
            help_text = f"{model.cli_model_name or '—'}" + (f" — {reason}" if reason else "")
            commands.append((model.id, partial(panel.pick, model.id), help_text))
        self.search_commands(commands, placeholder="Pick the model for the next run…")

    def action_open_config(self) -> None:
        paths = backend.config_paths(self.project_dir, self.env)
        # Every file that exists, and of the absent ones only the project's own (where a new one goes).
        project_file = self.project_dir / "opencode.json"
        paths = [path for path in paths if path.exists() or path == project_file] or [project_file]
        commands = [
            (str(path), lambda path=path: self.open_in_editor(path), "exists" if path.exists() else "not created yet")
            for path in paths
        ]
        self.search_commands(commands, placeholder="Open which config file?")

    def open_in_editor(self, path: Path) -> None:
        """Open ``path`` in $VISUAL/$EDITOR (the dashboard suspends meanwhile), or say where it is."""
        editor = shlex.split(self.env.get("VISUAL") or self.env.get("EDITOR") or "")
        if not editor or shutil.which(editor[0]) is None:
            self.copy_to_clipboard(str(path))
            self.notify(f"{path} (path copied). Set $EDITOR to open it from here.", title="Config path", timeout=10)
            return
        with self.suspend():
            subprocess.run([*editor, str(path)], check=False)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_focus_task(self) -> None:
        self.query_one("#task-input", TaskEditor).focus()

    @on(RegistryPanel.ModelChosen)
    def _registry_model_chosen(self, message: RegistryPanel.ModelChosen) -> None:
        self.query_one("#task", TaskPanel).pick(message.model_id)
        self.query_one("#task-input", TaskEditor).focus()

    # Quitting ----------------------------------------------------------------------------

    async def action_quit(self) -> None:
        running = self.running
        if running:
            self.push_screen(ConfirmQuitScreen(len(running)), self._quit_answered)
            return
        await self.shutdown()

    async def _quit_answered(self, answer: bool | None) -> None:
        if answer:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Release everything (:meth:`release`) and exit."""
        await self.release()
        self.exit(0)

    async def release(self) -> None:
        """Cancel every run and wait for them to end; end the OpenCode servers; stop the watcher and the demo."""
        for run_id in self.running:
            self.cancel_run(run_id)
        try:
            await backend.wait_all(self.runs.values())
        finally:
            await self.servers.aclose()
        if self.watcher is not None:
            await self.watcher.stop()
        if self.demo_environment is not None:
            await self.demo_environment.close()
            self.demo_environment = None

    async def on_unmount(self) -> None:
        """However the app ends, its runs, its OpenCode servers and the demo's gateway and files go with it."""
        for run_id in self.running:
            self.cancel_run(run_id)
        await self.servers.aclose()
        if self.watcher is not None:
            await self.watcher.stop()
        if self.demo_environment is not None:
            await self.demo_environment.close()
            self.demo_environment = None

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place for worker failures: a toast with the sentence, never a traceback on screen."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            sentence = error.sentence() if isinstance(error, NexusError) else f"{type(error).__name__}: {error}"
            self.notify(sentence, title=f"{event.worker.group} failed", severity="error", timeout=15)
