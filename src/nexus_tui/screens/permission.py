"""The permission question: a run's tool wants to act; ``y`` allows once, ``a`` always, ``n`` rejects."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from nexus_tui.live import PermissionQuestion, PermissionReply

__all__ = ["PermissionScreen"]


class PermissionScreen(ModalScreen[PermissionReply]):
    """Asks one question; dismissed with ``once``, ``always`` or ``reject``. ``queued`` more are waiting."""

    BINDINGS = [
        Binding("y", "answer('once')", "Allow once", id="permission.once"),
        Binding("a", "answer('always')", "Allow always", id="permission.always"),
        Binding("n", "answer('reject')", "Reject", id="permission.reject"),
    ]

    def __init__(self, question: PermissionQuestion, *, run_title: str = "", queued: int = 0) -> None:
        super().__init__()
        self.question = question
        self.run_title = run_title
        self.queued = queued

    def compose(self) -> ComposeResult:
        question = self.question
        head = Text()
        head.append(f"Run {question.run_id.rsplit('-', 1)[-1]}", style="bold")
        if self.run_title:
            head.append(f"  {self.run_title}", style="italic")
        head.append("\nwants to use ")
        head.append(question.tool, style="bold magenta")
        if question.title:
            head.append(f" — {question.title}")
        with Vertical(id="permission-dialog"):
            yield Static(head, id="permission-head")
            yield Static(Text(question.detail or "(no command or pattern given)"), id="permission-detail")
            yield Static("", id="permission-queued")
            with Horizontal(id="permission-buttons"):
                yield Button("Allow once (y)", variant="success", id="permission-once")
                yield Button("Always, this session (a)", variant="primary", id="permission-always")
                yield Button("Reject (n)", variant="error", id="permission-reject")

    def on_mount(self) -> None:
        self.query_one("#permission-dialog", Vertical).border_title = "Permission"
        self.set_queued(self.queued)
        self.query_one("#permission-once", Button).focus()

    def set_queued(self, queued: int) -> None:
        """How many more questions wait behind this one."""
        self.queued = queued
        line = self.query_one("#permission-queued", Static)
        line.update("1 more question waits" if queued == 1 else f"{queued} more questions wait")
        line.display = bool(queued)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        reply = str(event.button.id).removeprefix("permission-")
        self.action_answer(reply)

    def action_answer(self, reply: str) -> None:
        self.dismiss(reply)  # type: ignore[arg-type]
