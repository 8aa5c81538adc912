"""A run's tool calls, one row each, updated in place as their state moves on.

``pending`` → ``running`` → ``completed`` or ``error``; a finished call shows the first line of
its output (or its error). Only the last few rows are drawn; the log keeps the full history.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

__all__ = ["TOOL_STATE_STYLE", "ToolCallRow", "ToolCalls"]

TOOL_STATE_STYLE = {
    "pending": ("◌", "dim"),
    "running": ("●", "bold cyan"),
    "completed": ("✓", "bold green"),
    "error": ("✗", "bold red"),
}
SHOWN_ROWS = 4
EXCERPT_CHARS = 120


@dataclass
class ToolCallRow:
    """One tool call as drawn: the tool, its state, what it works on, and an excerpt of its output."""

    call_id: str
    tool: str
    state: str = "pending"
    title: str = ""
    excerpt: str = ""

    @property
    def finished(self) -> bool:
        return self.state in ("completed", "error")


def excerpt(output: str | None) -> str:
    """The first non-empty line of a tool's output, cut to :data:`EXCERPT_CHARS`."""
    first = next((line.strip() for line in (output or "").splitlines() if line.strip()), "")
    return first if len(first) <= EXCERPT_CHARS else first[: EXCERPT_CHARS - 1] + "…"


class ToolCalls(Static):
    """The run's tool calls, keyed by call id, the latest at the bottom."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.rows: dict[str, ToolCallRow] = {}

    def update_call(
        self,
        call_id: str,
        tool: str,
        state: str,
        *,
        title: str = "",
        output: str | None = None,
        error: str | None = None,
    ) -> ToolCallRow:
        """Add a call or move it to ``state``; a state it does not know is drawn as running."""
        row = self.rows.get(call_id)
        if row is None:
            row = self.rows[call_id] = ToolCallRow(call_id=call_id, tool=tool)
        row.state = state if state in TOOL_STATE_STYLE else "running"
        row.title = title or row.title
        if error:
            row.excerpt = excerpt(error)
        elif output is not None:
            row.excerpt = excerpt(output)
        self._draw()
        return row

    def _draw(self) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        shown = list(self.rows.values())[-SHOWN_ROWS:]
        hidden = len(self.rows) - len(shown)
        if hidden:
            text.append(f"  … {hidden} earlier tool call{'s' if hidden > 1 else ''}\n", style="dim")
        for index, row in enumerate(shown):
            icon, style = TOOL_STATE_STYLE[row.state]
            text.append(f"{icon} ", style=style)
            text.append(row.tool, style="bold")
            text.append(f" {row.state}", style=style)
            if row.title:
                text.append(f"  {row.title}")
            if row.excerpt:
                text.append(f"  → {row.excerpt}", style="red" if row.state == "error" else "dim")
            if index < len(shown) - 1:
                text.append("\n")
        self.update(text)
        self.display = bool(self.rows)
