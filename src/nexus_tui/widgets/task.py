"""The task editor, the run options, and the live score breakdown of every model for the task typed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Checkbox, DataTable, Input, Select, Static

from nexus_tui.views import Breakdown, RankedModel, RunRequest
from nexus_tui.widgets.editor import TaskEditor, TaskHistory

__all__ = ["VARIANTS", "Breakdown", "RankedModel", "RunRequest", "TaskPanel"]

VARIANTS = ("high", "max", "minimal")


def _term_label(name: str) -> str:
    return name.replace("_", " ")


class TaskPanel(Vertical):
    """Type a task; the breakdown follows as you type. Enter runs it; pick another model in the table."""

    BINDINGS = [
        Binding("escape", "clear_pick", "Auto model", show=False, id="task.clear_pick"),
    ]

    class ScoreWanted(Message):
        """The task text settled (after the debounce): score it."""

        def __init__(self, task: str) -> None:
            super().__init__()
            self.task = task

    class RunRequested(Message):
        """The user pressed Enter on a task (posted whether or not the run could start)."""

        def __init__(self, request: RunRequest) -> None:
            super().__init__()
            self.request = request

    class ModelPicked(Message):
        """The user picked a model for the next run (None: back to the top-ranked one)."""

        def __init__(self, model_id: str | None) -> None:
            super().__init__()
            self.model_id = model_id

    def __init__(self, *, debounce: float = 0.12, history: TaskHistory | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.debounce = debounce
        self.history = history
        # Starts a run for a request, synchronously: True if it started (the app sets this).
        self.starter: Callable[[RunRequest], bool] | None = None
        self.picked_model: str | None = None
        self.breakdown: Breakdown | None = None
        self._debounce_timer: Timer | None = None
        self._term_names: tuple[str, ...] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="task-row"):
            yield TaskEditor(
                self.history,
                accept=self._accept,
                placeholder="Describe a task — Enter runs it, Ctrl+J adds a line, Up recalls earlier tasks",
                id="task-input",
            )
            with Horizontal(id="task-options"):
                yield Select([(v, v) for v in VARIANTS], prompt="variant", id="task-variant", allow_blank=True)
                yield Checkbox("thinking", id="task-thinking")
                yield Input(placeholder="working dir (default: project)", id="task-workdir")
        yield Static("", id="task-chosen")
        table: DataTable[str | Text] = DataTable(id="breakdown", cursor_type="row", zebra_stripes=True, cell_padding=1)
        yield table

    def on_mount(self) -> None:
        self.border_title = "Task"
        self._draw_chosen()

    @property
    def task_input(self) -> TaskEditor:
        return self.query_one("#task-input", TaskEditor)

    @property
    def table(self) -> DataTable[str | Text]:
        return self.query_one("#breakdown", DataTable)

    @on(TaskEditor.Changed, "#task-input")
    def _task_changed(self, event: TaskEditor.Changed) -> None:
        event.stop()
        if self._debounce_timer is not None:
            self._debounce_timer.stop()
        text = event.text_area.text
        self._debounce_timer = self.set_timer(self.debounce, lambda: self.post_message(self.ScoreWanted(text)))

    def _accept(self, text: str) -> bool:
        """The editor's Enter: post the request and start it; False (the text stays) when refused."""
        request = self.request(text)
        self.post_message(self.RunRequested(request))
        return self.starter(request) if self.starter is not None else True

    def request(self, task: str) -> RunRequest:
        """The run request for ``task`` with the options as set now."""
        variant = self.query_one("#task-variant", Select).value
        workdir = self.query_one("#task-workdir", Input).value.strip()
        return RunRequest(
            task=task,
            model_id=self.picked_model,
            variant=variant if isinstance(variant, str) else None,
            thinking=self.query_one("#task-thinking", Checkbox).value,
            workdir=Path(workdir).expanduser() if workdir else None,
        )

    @on(DataTable.RowSelected, "#breakdown")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.pick(str(event.row_key.value))
        self.task_input.focus()

    def pick(self, model_id: str | None) -> None:
        """Run the next task on ``model_id`` instead of the top-ranked model (None: back to automatic)."""
        self.picked_model = model_id
        if self.breakdown is not None:
            self.show(self.breakdown)
        self._draw_chosen()
        self.post_message(self.ModelPicked(model_id))

    def action_clear_pick(self) -> None:
        self.pick(None)

    def show(self, breakdown: Breakdown) -> None:
        """Draw the ranking for the current task text."""
        self.breakdown = breakdown
        table = self.table
        names: list[str] = []
        for ranked in breakdown.ranked:
            for name, _ in ranked.terms:
                if name not in names:
                    names.append(name)
        with self.app.batch_update():
            if tuple(names) != self._term_names:
                table.clear(columns=True)
                table.add_column("#", key="rank")
                table.add_column("model", key="model")
                table.add_column("total", key="total")
                for name in names:
                    table.add_column(_term_label(name), key=f"term:{name}")
                table.add_column("skipped because", key="skipped")
                self._term_names = tuple(names)
            else:
                table.clear()
            for position, ranked in enumerate(breakdown.ranked, start=1):
                terms = dict(ranked.terms)
                if ranked.skipped:
                    cells: list[str | Text] = [
                        Text("–", style="dim"),
                        Text(ranked.model_id, style="dim"),
                        Text("–", style="dim", justify="right"),
                        *[Text("") for _ in names],
                        Text(ranked.skipped, style="yellow"),
                    ]
                else:
                    picked = ranked.model_id == self.picked_model
                    style = "bold" if ranked.model_id == breakdown.chosen or picked else ""
                    cells = [
                        Text(f"▶{position}" if picked else str(position), style="bold magenta" if picked else style),
                        Text(ranked.model_id + ("  (picked)" if picked else ""), style=style),
                        Text(f"{ranked.total:g}", style=f"{style} cyan".strip(), justify="right"),
                        *[
                            Text(
                                f"{terms[name]:+g}" if name in terms else "",
                                justify="right",
                                style="dim" if not terms.get(name) else "",
                            )
                            for name in names
                        ],
                        Text(""),
                    ]
                table.add_row(*cells, key=ranked.model_id)
            if self.picked_model is not None and self.picked_model in table.rows:
                table.move_cursor(row=table.get_row_index(self.picked_model), animate=False)
        self._draw_chosen()

    def _draw_chosen(self) -> None:
        line = Text()
        breakdown = self.breakdown
        if self.picked_model:
            line.append("picked ", style="bold magenta")
            line.append(self.picked_model, style="bold")
            line.append("  (Esc: back to the top-ranked)", style="dim")
        elif breakdown and breakdown.problem:
            line.append(breakdown.problem, style="red")
        elif breakdown and breakdown.chosen:
            line.append("→ ", style="bold green")
            line.append(breakdown.chosen, style="bold")
            line.append("  fallback ", style="dim")
            line.append(" → ".join(breakdown.fallback_chain) if breakdown.fallback_chain else "none")
            if breakdown.profile:
                line.append(f"   {breakdown.profile}", style="dim")
        else:
            line.append("Type a task to see how every model scores for it.", style="dim")
        self.query_one("#task-chosen", Static).update(line)
