"""A run's log: whole lines and streamed text deltas, written in batches, wrapped, capped.

Lines and deltas are queued and written together on :meth:`RunLog.flush` (the run view calls
it a few dozen times a second), as one :meth:`Log.write` call. A delta extends the log's last
line in place, so a streaming answer grows word by word without redrawing the rest. The view
follows the tail only while it is scrolled to the bottom; otherwise it counts the lines that
arrived below (``unseen_lines``).

A log out of view (its run's tab is not the one shown) still takes its lines, so that
``lines`` is always whole, but skips the size change and redraw that would lay out the whole
screen; it catches up when it is shown again.
"""

from __future__ import annotations

import re
import textwrap
from collections import deque
from collections.abc import Iterable
from typing import Self

from rich.cells import cell_len
from textual import events
from textual.geometry import Size
from textual.widgets import Log

__all__ = ["RunLog"]

_WORD = re.compile(r"\S+\s*|\s+")
_LINE_AND_ENDING = re.compile(r"(.*?)(\r\n|\r|\n|$)", re.S)  # as Log.write splits what it is given
_MIN_WRAP = 20


class RunLog(Log):
    """A :class:`~textual.widgets.Log` that also takes text deltas (:meth:`queue_text`)."""

    def __init__(self, *, line_cap: int, id: str | None = None) -> None:
        super().__init__(max_lines=line_cap, auto_scroll=False, id=id)
        # Queued writes in order: ("line", text) or ("text", delta); consecutive deltas merge.
        self._queued: deque[tuple[str, str]] = deque(maxlen=line_cap)
        self.unseen_lines = 0
        self.lines_received = 0
        self.lines_written = 0
        self._has_content = False
        self._open = False  # the last line is streamed text that later deltas extend
        self._column = 0
        # Shown on screen (Textual's Show/Hide); while not, writes skip the size change and redraw.
        self._in_view = False
        self._stale = False

    @property
    def pending(self) -> bool:
        """Whether anything waits for the next flush."""
        return bool(self._queued)

    def queue_lines(self, lines: Iterable[str]) -> None:
        """Queue whole lines (the oldest queued ones drop beyond the cap)."""
        for line in lines:
            self.lines_received += 1
            self._queued.append(("line", line))

    def queue_text(self, delta: str) -> None:
        """Queue a piece of streamed text: it continues the current line; a newline in it starts another."""
        if not delta:
            return
        if self._queued and self._queued[-1][0] == "text":
            self._queued[-1] = ("text", self._queued[-1][1] + delta)
        else:
            self._queued.append(("text", delta))

    def _wrap_width(self) -> int:
        width = self.scrollable_content_region.width - 1
        return width if width >= _MIN_WRAP else 0

    def _wrapped_lines(self) -> list[str]:
        width = self._wrap_width()
        lines: list[str] = []
        for _, text in self._queued:
            if width and len(text) > width:
                lines.extend(textwrap.wrap(text, width, replace_whitespace=False) or [""])
            else:
                lines.append(text)
        self._queued.clear()
        if lines:
            self._has_content = True
            self._column = len(lines[-1])
        return lines

    def _render_queued(self) -> tuple[str, int]:
        """The queued writes as one string for :meth:`Log.write`, and how many lines it starts."""
        width = self._wrap_width()
        out: list[str] = []
        started = 0

        def new_line() -> None:
            nonlocal started
            if self._has_content:
                out.append("\n")
            self._has_content = True
            self._column = 0
            started += 1

        for kind, text in self._queued:
            if kind == "line":
                pieces = [text]
                if width and len(text) > width:
                    pieces = textwrap.wrap(text, width, replace_whitespace=False) or [""]
                for index, piece in enumerate(pieces):
                    # An empty open line (a delta ended with a newline) takes the line instead of leaving a gap.
                    if not (index == 0 and self._open and self._column == 0 and self._has_content):
                        new_line()
                    out.append(piece)
                    self._open = False
                self._column = len(pieces[-1])
                continue
            for index, segment in enumerate(text.split("\n")):
                if index > 0 or not self._open:
                    new_line()
                self._open = True
                for word in _WORD.findall(segment):
                    if width and self._column and self._column + len(word.rstrip()) > width:
                        new_line()
                        word = word.lstrip()
                    while width and len(word) > width:
                        out.append(word[:width])
                        new_line()
                        word = word[width:]
                    out.append(word)
                    self._column += len(word)
        self._queued.clear()
        return "".join(out), started

    def flush(self) -> None:
        """Write what is queued in one batch; follow the tail only if the view is at the bottom."""
        if not self.is_mounted:
            return
        if not self._queued:
            if self.unseen_lines and self.is_vertical_scroll_end:
                self.follow()
            return
        follow = self.is_vertical_scroll_end or self.max_scroll_y == 0
        if not self._open and all(kind == "line" for kind, _ in self._queued):
            # Whole lines only (the common case): Log.write_lines takes them in bulk.
            lines = self._wrapped_lines()
            self.write_lines(lines, scroll_end=follow)
            started = len(lines)
        else:
            text, started = self._render_queued()
            self.write(text, scroll_end=follow)
        self.lines_written += started
        self.unseen_lines = 0 if follow else self.unseen_lines + started
        if follow:
            # Scrolled again once the layout has caught up: the last line must never stay below the fold.
            self.call_after_refresh(self._keep_tail)

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> Self:
        """:meth:`Log.write_lines` without its thread per call (the width is measured here) and, out of
        view, without the size change that lays out the screen."""
        follow = self.auto_scroll if scroll_end is None else scroll_end
        new_lines: list[str] = []
        for line in lines:
            new_lines.extend(line.splitlines())
        if not new_lines:
            return self
        start = len(self._lines)
        at_end = self.is_vertical_scroll_end
        self._lines.extend(new_lines)
        self._measure(new_lines)
        if self.max_lines is not None and len(self._lines) > self.max_lines:
            self._prune_max_lines()
        if not self._in_view:
            self._stale = True
            return self
        self._grow(Size(self._width, len(self._lines)))
        self.refresh_lines(start, len(new_lines))
        if follow and at_end and not self.is_vertical_scrollbar_grabbed:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        else:
            self.refresh()
        return self

    def write(self, data: str, scroll_end: bool | None = None) -> Self:
        """:meth:`Log.write` (text that continues the last line), out of view without its redraw."""
        follow = self.auto_scroll if scroll_end is None else scroll_end
        if not data:
            return self
        lines = self._lines
        if not lines:
            lines.append("")
        for line, ending in _LINE_AND_ENDING.findall(data)[:-1]:
            lines[-1] += line
            self._measure(lines[-1:])
            if self._in_view:
                self.refresh_lines(len(lines) - 1)
            if ending:
                lines.append("")
        if self.max_lines is not None and len(lines) > self.max_lines:
            self._prune_max_lines()
        if not self._in_view:
            self._stale = True
            return self
        self._grow(Size(self._width, self.line_count))
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        return self

    def _grow(self, size: Size) -> None:
        """Set the virtual size; a screen layout only when a scrollbar comes or goes (the log's own
        size never follows its content), else just the scrollbars' update that a layout would make."""
        if size == self.virtual_size:
            return
        height = self.styles.height
        if height is None or height.is_auto:
            self.virtual_size = size
            return
        scrollbars = (self.show_vertical_scrollbar, self.show_horizontal_scrollbar)
        self.set_reactive(RunLog.virtual_size, size)
        self._refresh_scrollbars()
        if (self.show_vertical_scrollbar, self.show_horizontal_scrollbar) != scrollbars:
            self.refresh(layout=True)
        else:
            self._scroll_update(size)

    def _measure(self, lines: list[str]) -> None:
        process = self._process_line
        # Printable ASCII is one cell a character; anything else is measured as Log measures it.
        widest = max(len(line) if line.isascii() and line.isprintable() else cell_len(process(line)) for line in lines)
        self._width = max(self._width, widest)

    def on_show(self, event: events.Show) -> None:
        self._in_view = True
        if self._stale:
            self._stale = False
            self._render_line_cache.clear()
            self.virtual_size = Size(self._width, self.line_count)
            self.refresh()
            if self.unseen_lines == 0:
                self.call_after_refresh(self._keep_tail)

    def on_hide(self, event: events.Hide) -> None:
        self._in_view = False

    def _keep_tail(self) -> None:
        if self.unseen_lines == 0 and not self.is_vertical_scroll_end:
            self.scroll_end(animate=False, immediate=True)

    def on_resize(self) -> None:
        # A panel collapsed, a zoom, a tab brought into view: a followed log stays at its tail.
        if self.unseen_lines == 0:
            self.call_after_refresh(self._keep_tail)

    def follow(self) -> None:
        """Scroll to the tail and follow it again."""
        self.scroll_end(animate=False)
        self.unseen_lines = 0

    @property
    def text(self) -> str:
        """Everything the log holds (up to its line cap), as one string."""
        return "\n".join(self.lines)
