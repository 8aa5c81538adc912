"""The registry table: every model, sortable and filterable, updated in place by row key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static
from textual.widgets.data_table import ColumnKey

if TYPE_CHECKING:
    from nexus_core.routing.registry import ModelProfile, Registry

__all__ = ["RegistryPanel", "RegistryRow", "registry_rows"]

AVAILABLE = "✓"
UNAVAILABLE = "✗"
#: The availability cell shows the start of the reason; the breakdown and the health details show all of it.
REASON_CHARS = 64


def availability_cell(reason: str | None) -> str:
    """``✓``, or ``✗`` and the start of why the model is unavailable (gateway down, key missing, …)."""
    if reason is None:
        return AVAILABLE
    text = " ".join(reason.split())
    return f"{UNAVAILABLE} {text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1].rstrip() + '…'}"


@dataclass(frozen=True)
class RegistryRow:
    """One model as the table shows it: cell texts in column order, plus the values sorting needs."""

    model_id: str
    cells: tuple[str, ...]
    available: bool

    def matches(self, needle: str) -> bool:
        return not needle or any(needle in cell.lower() for cell in self.cells)


COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("cli", "CLI model name"),
    ("provider", "provider"),
    ("reasoning", "rsn"),
    ("code", "code"),
    ("speed", "spd"),
    ("cost", "cost"),
    ("context", "context"),
    ("source", "source"),
    ("availability", "availability"),
)
NUMERIC = {"reasoning", "code", "speed", "cost", "context"}


def _context(limit: int | None) -> str:
    if not limit:
        return "—"
    return f"{limit // 1000}k" if limit >= 1000 else str(limit)


def registry_rows(registry: Registry, unavailable: Mapping[str, str]) -> list[RegistryRow]:
    """Table rows for ``registry``; ``unavailable`` maps a model id to the reason it cannot be used."""

    def row(model: ModelProfile) -> RegistryRow:
        quality = model.quality
        reason = unavailable.get(model.id)
        return RegistryRow(
            model_id=model.id,
            cells=(
                model.id,
                model.cli_model_name or "— (no default model)",
                model.provider,
                f"{quality.reasoning:g}",
                f"{quality.code:g}",
                f"{quality.speed:g}",
                f"{quality.cost:g}",
                _context(model.context_limit),
                model.source,
                availability_cell(reason),
            ),
            available=reason is None,
        )

    return [row(model) for model in registry.models]


def _sort_value(column: str, cell: str) -> tuple[int, float | str]:
    if column in NUMERIC:
        number = cell.rstrip("k")
        try:
            return (0, -float(number) * (1000 if cell.endswith("k") else 1))
        except ValueError:
            return (1, 0.0)
    return (0, cell.lower())


class RegistryPanel(Vertical):
    """The model registry: a filter box over a table; click a header (or ``s``) to sort, again to reverse.

    The sorted column's header carries an arrow (▼ highest or A first, ▲ reversed); the border shows
    how many models match the filter. In the filter box Esc clears it and Enter moves to the rows.
    """

    BINDINGS = [
        Binding("s", "cycle_sort", "Sort", id="registry.sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False, id="registry.reverse"),
        Binding("slash", "focus_filter", "Filter", id="registry.filter"),
    ]

    class ModelChosen(Message):
        """The user pressed Enter on a model row."""

        def __init__(self, model_id: str) -> None:
            super().__init__()
            self.model_id = model_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: dict[str, RegistryRow] = {}
        self._filter = ""
        self.sort_column = "id"
        self.sort_reverse = False

    def compose(self) -> ComposeResult:
        yield Static("", id="registry-config-error")
        yield Input(placeholder="filter models (/)", id="registry-filter")
        table: DataTable[str | Text] = DataTable(id="registry-table", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("", id="registry-problems")

    @property
    def table(self) -> DataTable[str | Text]:
        return self.query_one("#registry-table", DataTable)

    @property
    def shown_ids(self) -> list[str]:
        """Model ids in the order the table shows them."""
        return [str(row.key.value) for row in self.table.ordered_rows]

    def show(self, rows: list[RegistryRow], problems: tuple[str, ...] = ()) -> None:
        """Bring the table to ``rows``: changed cells are updated in place, rows added and removed by key."""
        table = self.table
        incoming = {row.model_id: row for row in rows}
        with self.app.batch_update():
            for model_id in list(self._rows):
                if model_id not in incoming and model_id in table.rows:
                    table.remove_row(model_id)
            for row in rows:
                old = self._rows.get(row.model_id)
                visible = row.matches(self._filter)
                if row.model_id in table.rows:
                    if not visible:
                        table.remove_row(row.model_id)
                    elif old is not None and old.cells != row.cells:
                        for (key, _), before, after in zip(COLUMNS, old.cells, row.cells, strict=True):
                            if before != after:
                                table.update_cell(row.model_id, key, self._cell(key, after, row.available))
                elif visible:
                    table.add_row(*self._cells(row), key=row.model_id)
            self._rows = incoming
            self._sort()
        self._draw_count()
        self.query_one("#registry-problems", Static).update("\n".join(problems))
        self.query_one("#registry-problems", Static).display = bool(problems)

    def show_config_error(self, sentence: str | None) -> None:
        """Show (or, with None, clear) the error of a config file that does not parse."""
        line = self.query_one("#registry-config-error", Static)
        line.update(Text(f"✗ {sentence}", style="bold red") if sentence else "")
        line.display = bool(sentence)

    def _cells(self, row: RegistryRow) -> list[str | Text]:
        return [self._cell(key, cell, row.available) for (key, _), cell in zip(COLUMNS, row.cells, strict=True)]

    @staticmethod
    def _cell(column: str, value: str, available: bool) -> str | Text:
        if column == "availability":
            return Text(value, style="bold green" if available else "yellow", no_wrap=True, overflow="ellipsis")
        if column in NUMERIC:
            return Text(value, justify="right")
        return value

    def _sort(self) -> None:
        column = self.sort_column
        index = [key for key, _ in COLUMNS].index(column)
        ranked = sorted(self._rows, key=lambda mid: (_sort_value(column, self._rows[mid].cells[index]), mid))
        if self.sort_reverse:
            ranked.reverse()
        order = {model_id: position for position, model_id in enumerate(ranked)}
        self.table.sort("id", key=lambda model_id: order.get(str(model_id), len(order)))

    def apply_filter(self, needle: str) -> None:
        """Show only the rows with a cell containing ``needle`` (case-insensitive)."""
        self._filter = needle.strip().lower()
        table = self.table
        with self.app.batch_update():
            for row in self._rows.values():
                present = row.model_id in table.rows
                if row.matches(self._filter) and not present:
                    table.add_row(*self._cells(row), key=row.model_id)
                elif not row.matches(self._filter) and present:
                    table.remove_row(row.model_id)
            self._sort()
        self._draw_count()

    @property
    def filter_text(self) -> str:
        return self._filter

    def _draw_count(self) -> None:
        shown, total = len(self.table.rows), len(self._rows)
        label = dict(COLUMNS)[self.sort_column]
        arrow = "▲" if self.sort_reverse else "▼"
        matched = f"{shown} of {total} match “{self._filter}”" if self._filter else f"{total} models"
        self.border_subtitle = f"{matched} · sorted by {label} {arrow}"

    def _draw_headers(self) -> None:
        arrow = " ▲" if self.sort_reverse else " ▼"
        for key, label in COLUMNS:
            column = self.table.columns.get(ColumnKey(key))
            if column is not None:
                column.label = Text(label + (arrow if key == self.sort_column else ""), style="bold")
        self.table.refresh()

    @on(Input.Changed, "#registry-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.apply_filter(event.value)

    @on(DataTable.HeaderSelected)
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    @on(DataTable.RowSelected, "#registry-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.ModelChosen(str(event.row_key.value)))

    def sort_by(self, column: str, *, reverse: bool | None = None) -> None:
        """Order the rows by ``column`` (numbers highest first, text A to Z); the same column again reverses.

        ``reverse`` given sets the direction instead.
        """
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column = column
        self.sort_reverse = reverse
        with self.app.batch_update():
            self._sort()
            self._draw_headers()
        self._draw_count()

    def action_cycle_sort(self) -> None:
        keys = [key for key, _ in COLUMNS]
        self.sort_by(keys[(keys.index(self.sort_column) + 1) % len(keys)], reverse=False)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    def on_mount(self) -> None:
        self._draw_headers()
        self._draw_count()

    @on(Input.Submitted, "#registry-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    def on_key(self, event: events.Key) -> None:
        # Esc in the filter box clears it (and leaves for the rows); elsewhere Esc is not ours.
        if event.key == "escape" and self.app.focused is self.query_one("#registry-filter", Input):
            event.stop()
            self.query_one("#registry-filter", Input).value = ""
            self.apply_filter("")
            self.table.focus()

    def action_focus_filter(self) -> None:
        self.query_one("#registry-filter", Input).focus()
