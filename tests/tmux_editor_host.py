"""A task panel alone in a real terminal, for the tmux test: each submitted task is appended to a file."""

from __future__ import annotations

import json
import sys

from textual.app import App, ComposeResult

from nexus_tui.widgets.task import TaskPanel


class Host(App[None]):
    def __init__(self, record: str) -> None:
        super().__init__()
        self.record = record

    def compose(self) -> ComposeResult:
        yield TaskPanel(debounce=0.01, id="task")

    def on_mount(self) -> None:
        self.query_one("#task-input").focus()
        self.query_one("#task", TaskPanel).starter = self.started

    def started(self, request) -> bool:
        with open(self.record, "a", encoding="utf-8") as out:
            out.write(json.dumps(request.task) + "\n")
        return True


if __name__ == "__main__":
    Host(sys.argv[1]).run()
