"""Modal screens: help, and the question asked before quitting with runs in progress."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

__all__ = ["HELP_TEXT", "ConfirmQuitScreen", "HelpScreen"]

HELP_TEXT = """\
# nexus dashboard

Type a task in the **Task** box. As you type, every model is scored for it: the table shows
each model's total and the named terms that add up to it, the chosen model and its fallback
chain. **Enter** runs the task on the top-ranked model.

## Keys

- `Enter` in the task box: run the task; `Ctrl+J` (or `Shift+Enter`): a new line; a paste keeps its lines
- `Up` / `Down` on the first / last line of the task box: earlier tasks
- `Tab` / `Shift+Tab`: move between the task box, the options, the breakdown, the registry, the runs
- `Enter` on a breakdown or registry row: pick that model for the next run; `Esc` in the task box: automatic again
- `F2` / `F3`: collapse or open the Models / Task panels; `F4`: Health; `F7` (or `z` in a run): zoom the run
- `F8` (or `c` in a run): cancel the run in view (its OpenCode session is aborted)
- `F6`: the follow-up box of the run in view, once it has ended; `Enter` sends it into the same OpenCode session
- In a run: `y` copy the reply, `s` save the log, `r` re-run on another model, `End` follow the tail,
  `1`…`9` and `[` / `]` switch tabs, `x` close a finished tab, `X` clear every finished one
- `F9` (or `h` / `0` in the runs): this project's past runs; `Enter` replays one, where `R` re-runs it on the same
  model and `F6` continues its OpenCode session
- Permission question: `y` allow once, `a` allow always (this session), `n` reject
- `/` (outside text boxes) or `Ctrl+F` (anywhere): filter the models; `Esc` clears, `Enter` goes to the rows
- `s` in the registry: sort by the next column; a click on a header sorts by it, a second click reverses
- `Enter` on a health check: its whole text; `d` in the Health panel: every check in full
- `F5`: re-check health (doctor's checks); `Shift+F5` (or `F10`): also probe every model with a chat request
  and run an `opencode run` smoke. Models the check finds unusable (gateway down, key missing, not served,
  probe failed) show why in the Models table and are skipped by routing until a later check passes
- `Ctrl+T`: back to the task box
- `Ctrl+P`: command palette — run task, pick model, zoom, copy, save, re-run, tabs, health, config path, theme
- `F1`: this help
- `Ctrl+Q`: quit (asks first while runs are in progress; no OpenCode process is left)

Saving `opencode.json` reloads the registry and the breakdown and shows what changed. A file
that does not parse is named with its line and column, and the last good config stays in force.
"""


class HelpScreen(ModalScreen[None]):
    """Key bindings and what the panels mean."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            # Markdown (markdown-it) is imported on first use: it is not needed for the first frame.
            from textual.widgets import Markdown

            yield Markdown(HELP_TEXT)
            yield Static("Esc closes", id="help-close-hint")


class ConfirmQuitScreen(ModalScreen[bool]):
    """Asked when quitting while runs are in progress: True cancels them and quits."""

    BINDINGS = [
        Binding("y", "answer(True)", "Quit", id="quit.yes"),
        Binding("n,escape", "answer(False)", "Stay", id="quit.no"),
    ]

    def __init__(self, running: int) -> None:
        super().__init__()
        self.running = running

    def compose(self) -> ComposeResult:
        runs = "1 run is" if self.running == 1 else f"{self.running} runs are"
        with Vertical(id="quit-dialog"):
            yield Static(
                f"{runs} still in progress.\nQuit and cancel them? Their OpenCode processes will be ended.",
                id="quit-question",
            )
            with Horizontal(id="quit-buttons"):
                yield Button("Cancel runs and quit (y)", variant="error", id="quit-yes")
                yield Button("Stay (n)", variant="primary", id="quit-no")

    def on_mount(self) -> None:
        self.query_one("#quit-no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
