"""A run's log: whole lines and streamed text deltas, written in batches, wrapped, capped.

Lines and deltas are queued and written together on :meth:`RunLog.flush` (the run view calls
it a few dozen times a second), as one :meth:`RunLog.write` call. A delta extends the log's last
line in place, so a streaming answer grows word by word without redrawing the rest. The view
follows the tail only while it is scrolled to the bottom; otherwise it counts the lines that
arrived below (``unseen_lines``). The log keeps its own bounded lines and draws them with
Textual's Line API (a :class:`~textual.scroll_view.ScrollView`), as Textual's ``Log`` draws.

A log out of view (its run's tab is not the one shown) still takes its lines, so that
``lines`` is always whole, but skips the size change and redraw that would lay out the whole
screen; it catches up when it is shown again.
"""

from __future__ import annotations

import re
import textwrap
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Self, overload

from rich.cells import cell_len
from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.selection import Selection
from textual.strip import Strip

__all__ = ["RunLog"]

_WORD = re.compile(r"\S+\s*|\s+")
_LINE_AND_ENDING = re.compile(r"(.*?)(\r\n|\r|\n|$)", re.S)  # as Textual's Log splits what it writes
_CONTROL = re.compile("[\u0000-\u0014]")
_MIN_WRAP = 20


def _drawn(line: str) -> str:
    """A line as drawn: tabs expanded, control characters shown as one replacement character each."""
    return _CONTROL.sub("\ufffd", line.expandtabs())


class _Lines(Sequence[str]):
    """A read-only view of a log's lines (no copy; a slice is a list)."""

    __slots__ = ("_store",)

    def __init__(self, store: deque[str]) -> None:
        self._store = store

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return list(self._store)[index]
        return self._store[index]

    def __len__(self) -> int:
        return len(self._store)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __contains__(self, line: object) -> bool:
        return line in self._store

    def __repr__(self) -> str:
        return repr(list(self._store))


class RunLog(ScrollView, can_focus=True):
    """A log of lines (:meth:`queue_lines`) and streamed text deltas (:meth:`queue_text`), drawn with
    Textual's Line API and drawn like Textual's ``Log``."""

    ALLOW_SELECT = True
    DEFAULT_CSS = """
    RunLog {
        background: $surface;
        color: $text;
        overflow: scroll;
        &:focus {
            background-tint: $foreground 5%;
        }
    }
    """

    def __init__(self, *, line_cap: int, id: str | None = None) -> None:
        super().__init__(id=id)
        self._cap = line_cap
        self._store: deque[str] = deque(maxlen=line_cap)
        self._width = 0  # the widest line seen, in cells (the virtual width)
        self.auto_scroll = False
        """Whether :meth:`write` and :meth:`write_lines` follow the tail when not told."""
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
        """The queued writes as one string for :meth:`write`, and how many lines it starts."""
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
            # Whole lines only (the common case): write_lines takes them in bulk.
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
        """Append whole lines (each split at its newlines; an empty one adds nothing, as in Textual's
        ``Log``); out of view without the size change and redraw."""
        follow = self.auto_scroll if scroll_end is None else scroll_end
        new_lines: list[str] = []
        for line in lines:
            new_lines.extend(line.splitlines())
        if not new_lines:
            return self
        at_end = self.is_vertical_scroll_end
        store = self._store
        dropped = len(store) + len(new_lines) > self._cap
        store.extend(new_lines)
        self._measure(new_lines)
        if not self._in_view:
            self._stale = True
            return self
        self._grow(Size(self._width, len(store)))
        if follow and at_end and not self.is_vertical_scrollbar_grabbed:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        if dropped or not (follow and at_end):
            self.refresh()  # the oldest lines went: every line on screen moved up
        else:
            count = min(len(new_lines), len(store))
            self.refresh_lines(len(store) - count, count)
        return self

    def write_line(self, line: str, scroll_end: bool | None = None) -> Self:
        """Append one line (see :meth:`write_lines`)."""
        return self.write_lines([line], scroll_end)

    def write(self, data: str, scroll_end: bool | None = None) -> Self:
        """Append text that continues the last line (a newline in it starts another), out of view
        without the redraw."""
        follow = self.auto_scroll if scroll_end is None else scroll_end
        if not data:
            return self
        store = self._store
        if not store:
            store.append("")
        dropped = False
        for line, ending in _LINE_AND_ENDING.findall(data)[:-1]:
            store[-1] += line
            self._measure((store[-1],))
            if self._in_view and not dropped:
                self.refresh_lines(len(store) - 1)
            if ending:
                dropped = dropped or len(store) == self._cap
                store.append("")
        if not self._in_view:
            self._stale = True
            return self
        self._grow(Size(self._width, self.line_count))
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        if dropped:
            self.refresh()
        return self

    def clear(self) -> Self:
        """Remove every line (what is queued stays queued)."""
        self._store.clear()
        self._width = 0
        self._has_content = False
        self._open = False
        self._column = 0
        self.unseen_lines = 0
        self.virtual_size = Size(0, 0)
        self.refresh()
        return self

    @property
    def lines(self) -> Sequence[str]:
        """The lines the log holds (up to its line cap), oldest first: a read-only view."""
        return _Lines(self._store)

    @property
    def line_count(self) -> int:
        """How many lines the log holds (a last empty line, where the next text goes, not counted)."""
        store = self._store
        return len(store) - (store[-1] == "") if store else 0

    @property
    def max_lines(self) -> int:
        """The line cap: the oldest lines drop beyond it."""
        return self._cap

    def _grow(self, size: Size) -> None:
        """Set the virtual size without laying out the screen where the log's scrollbars can neither
        come nor go (its overflow is ``scroll`` or ``hidden`` and its height does not follow its
        content): then only the scrollbars change, as a layout would have changed them."""
        if size == self.virtual_size:
            return
        styles = self.styles
        height = styles.height
        fixed = {styles.overflow_x, styles.overflow_y} <= {"scroll", "hidden"}
        if not fixed or height is None or height.is_auto or size.height < self.virtual_size.height:
            self.virtual_size = size
            return
        self.set_reactive(RunLog.virtual_size, size)
        if self.show_vertical_scrollbar:
            self.vertical_scrollbar.window_virtual_size = size.height
        if self.show_horizontal_scrollbar:
            self.horizontal_scrollbar.window_virtual_size = size.width

    def _measure(self, lines: Iterable[str]) -> None:
        # Printable ASCII is one cell a character; anything else is measured as it is drawn.
        widest = max(len(line) if line.isascii() and line.isprintable() else cell_len(_drawn(line)) for line in lines)
        self._width = max(self._width, widest)

    def render_line(self, y: int) -> Strip:
        """Draw row ``y`` of the view (the Line API)."""
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        style = self.rich_style
        if index >= len(self._store):
            return Strip.blank(width, style)
        raw = self._store[index]
        text = raw if raw.isascii() and raw.isprintable() else _drawn(raw)
        selection = self.text_selection
        span = selection.get_span(index) if selection is not None else None
        if span is None:
            strip = Strip([Segment(text, style)] if text else [], cell_len(text))
        else:
            line = Text(text, no_wrap=True)
            line.stylize(style)
            start, end = span
            line.stylize(
                self.screen.get_component_rich_style("screen--selection"), start, len(line) if end == -1 else end
            )
            strip = Strip(line.render(self.app.console), cell_len(text))
        return strip.crop_extend(scroll_x, scroll_x + width, style).apply_offsets(scroll_x, index)

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        """The selected text (mouse selection) and the ending to copy it with."""
        return selection.extract(self.text), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        """Redraw with the selection's highlight."""
        self.refresh()

    def on_show(self, event: events.Show) -> None:
        self._in_view = True
        if self._stale:
            self._stale = False
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
