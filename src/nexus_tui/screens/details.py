"""A full-text view: what a panel had to cut (a health check's whole summary and fix)."""

from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["DetailsScreen"]


class DetailsScreen(ModalScreen[None]):
    """``body`` in full, scrollable, under ``title``; Esc closes."""

    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close", id="details.close")]

    def __init__(self, title: str, body: RenderableType) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details-dialog"):
            yield Static(self.body, id="details-body")
            yield Static("Esc closes", id="details-close-hint")

    def on_mount(self) -> None:
        dialog = self.query_one("#details-dialog", VerticalScroll)
        dialog.border_title = self.title_text
        dialog.focus()
