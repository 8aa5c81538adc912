"""The task editor: a multi-line text area where Enter submits and earlier tasks can be recalled.

Enter hands the whole text to ``accept`` and empties the editor in the same key handler, so keys
typed right after Enter land in the empty editor and start the next task (they are never merged
into the one just submitted); a text ``accept`` refuses stays where it is. A paste keeps every line; Ctrl+J (and Shift+Enter, where the terminal reports it)
inserts a newline. Up on the first line and Down on the last one walk the task history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

__all__ = ["InMemoryTaskHistory", "TaskEditor", "TaskHistory"]

HISTORY_LIMIT = 200


class TaskHistory(Protocol):
    """Where earlier tasks come from (the run store can back this later)."""

    def entries(self) -> Sequence[str]:
        """Earlier tasks, oldest first."""
        ...

    def add(self, task: str) -> None:
        """Remember a submitted task."""
        ...


class InMemoryTaskHistory:
    """The tasks of this session, oldest first, without repeats in a row, bounded."""

    def __init__(self, entries: Sequence[str] = (), limit: int = HISTORY_LIMIT) -> None:
        self.limit = limit
        self._entries: list[str] = list(entries)[-limit:]

    def entries(self) -> Sequence[str]:
        return tuple(self._entries)

    def add(self, task: str) -> None:
        if self._entries and self._entries[-1] == task:
            return
        self._entries.append(task)
        del self._entries[: -self.limit]


class TaskEditor(TextArea):
    """A multi-line task box. Enter posts :class:`Submitted` with the text and leaves the box empty."""

    # Shown in the footer. The keys themselves are handled in :meth:`_on_key`, in this widget's own
    # queue, after the characters typed before them: a priority binding would run on the app's
    # queue first, so Enter in a burst ("abc⏎def") would see an editor that has not yet got "abc".
    BINDINGS = [
        Binding("enter", "submit", "Run task", id="editor.submit"),
        Binding("ctrl+j", "newline", "Newline", show=False, id="editor.newline"),
    ]
    _KEY_ACTIONS = {
        "enter": "submit",
        "ctrl+j": "newline",
        "shift+enter": "newline",
        "up": "history_back",
        "down": "history_forward",
    }

    class Submitted(Message):
        """The user pressed Enter: ``text`` is the task as it was at that instant."""

        def __init__(self, editor: TaskEditor, text: str) -> None:
            super().__init__()
            self.editor = editor
            self.text = text

        @property
        def control(self) -> TaskEditor:
            return self.editor

    def __init__(
        self,
        history: TaskHistory | None = None,
        *,
        accept: Callable[[str], bool] | None = None,
        placeholder: str = "",
        id: str | None = None,
    ) -> None:
        super().__init__(
            "",
            soft_wrap=True,
            tab_behavior="focus",
            show_line_numbers=False,
            highlight_cursor_line=False,
            placeholder=placeholder,
            compact=True,
            id=id,
        )
        self.task_history: TaskHistory = history if history is not None else InMemoryTaskHistory()
        # Called with the text on Enter, before the box lets go of it: False keeps the text (refused).
        self.accept = accept
        # Where Up/Down are in the history: None is the draft being typed (kept while browsing).
        self._recall_index: int | None = None
        self._draft = ""

    async def _on_key(self, event: events.Key) -> None:
        action = self._KEY_ACTIONS.get(event.key)
        if action is None:
            await super()._on_key(event)
            return
        event.stop()
        event.prevent_default()
        getattr(self, f"action_{action}")()

    def set_text(self, text: str) -> None:
        """Replace the text and put the cursor at its end."""
        self.load_text(text)
        self.move_cursor(self.document.end)

    def action_submit(self) -> None:
        """Hand the text over and empty the box in this same key handler (a refused text stays)."""
        text = self.text.strip()
        if not text:
            self.app.bell()
            return
        self.task_history.add(text)
        if self.accept is not None and not self.accept(text):
            return
        self.load_text("")
        self._recall_index = None
        self._draft = ""
        self.post_message(self.Submitted(self, text))

    def action_newline(self) -> None:
        start, end = self.selection
        self.replace("\n", start, end, maintain_selection_offset=False)

    def action_history_back(self) -> None:
        if self.cursor_location[0] > 0 or self.selection.start != self.selection.end:
            self.action_cursor_up()
            return
        entries = self.task_history.entries()
        if not entries:
            return
        if self._recall_index is None:
            self._draft = self.text
            self._recall_index = len(entries)
        if self._recall_index == 0:
            self.app.bell()
            return
        self._recall_index -= 1
        self._show_recalled(entries[self._recall_index])

    def action_history_forward(self) -> None:
        if self.cursor_location[0] < self.document.line_count - 1 or self._recall_index is None:
            self.action_cursor_down()
            return
        entries = self.task_history.entries()
        self._recall_index += 1
        if self._recall_index >= len(entries):
            self._recall_index = None
            self._show_recalled(self._draft)
        else:
            self._show_recalled(entries[self._recall_index])

    def _show_recalled(self, text: str) -> None:
        self.load_text(text)
        # On the first line so that Up walks on; Down walks back from the last line.
        self.move_cursor((0, len(self.document[0])))
