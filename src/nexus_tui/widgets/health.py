"""The health panel: doctor's checks with colour, timing and fix, and the gateway's latency history.

The header counts failures and warnings (never "all checks pass" beside a warning) and the models
routing leaves out because of them. The checks are a list, failures first: Enter on one opens its
whole text (summary, detail, fix) in a details view; ``d`` opens every check in full.
"""

from __future__ import annotations

from collections import deque

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Sparkline, Static
from textual.widgets.option_list import Option

from nexus_tui.views import STATUS_MARK, HealthCheck, HealthReport

__all__ = ["HealthCheck", "HealthPanel", "HealthReport"]

LATENCY_HISTORY = 40


class HealthPanel(Vertical):
    """Doctor's verdicts, re-checked on demand (F5; Shift+F5 or F10 also probes every model) and after every config reload.

    Enter on a check opens its whole text; ``d`` opens every check in full.
    """

    BINDINGS = [Binding("d", "app.health_details", "All details", id="health.details")]

    class DetailsWanted(Message):
        """Enter on a check: open its whole text."""

        def __init__(self, check_id: str) -> None:
            super().__init__()
            self.check_id = check_id

    def __init__(self, *, show_timings: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.show_timings = show_timings
        self.report: HealthReport | None = None
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self.running = False

    def compose(self) -> ComposeResult:
        yield Static(
            Text("Not checked yet: F5 runs the health checks, Shift+F5 (or F10) the probes.", style="dim"),
            id="health-body",
        )
        yield OptionList(id="health-checks", compact=True)
        with Vertical(id="health-latency"):
            yield Static("gateway latency", id="health-latency-label")
            yield Sparkline([], id="health-latency-spark", min_color="green", max_color="red")

    def on_mount(self) -> None:
        self.border_title = "Health"

    def checking(self, probe: bool = False) -> None:
        """A doctor run started (``probe``: with a chat probe of every model and an ``opencode run`` smoke)."""
        self.running = True
        self.border_subtitle = "probing every model…" if probe else "checking…"
        if self.report is None:
            self.query_one("#health-body", Static).update(
                Text("Checking OpenCode, the config and the gateway…", style="dim")
            )

    def failed_to_check(self, sentence: str) -> None:
        """Doctor itself could not run: say why, keep the last report's latency history."""
        self.running = False
        self.border_subtitle = "doctor failed"
        self.query_one("#health-body", Static).update(Text(sentence, style="red"))

    def show(self, report: HealthReport) -> None:
        """Draw a finished doctor run."""
        self.running = False
        self.report = report
        checks = self.query_one("#health-checks", OptionList)
        highlighted = checks.highlighted
        checks.set_options(Option(self._row(check), id=check.check_id) for check in report.by_urgency())
        if report.checks:
            checks.highlighted = min(highlighted or 0, len(report.checks) - 1)
        self.query_one("#health-body", Static).update(report.headline())
        self.border_subtitle = f"{len(report.checks)} checks"
        if report.gateway_latency_ms is not None:
            self.latency_ms.append(report.gateway_latency_ms)
        self._draw_latency()

    def _row(self, check: HealthCheck) -> Table:
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(width=1)
        table.add_column(ratio=1)
        if self.show_timings:
            table.add_column(justify="right", style="dim", width=7)
        mark, style = STATUS_MARK.get(check.status, ("?", "magenta"))
        body = Text()
        body.append(check.check_id, style="bold")
        body.append(f"  {check.summary}")
        if check.fix and check.status in ("fail", "warn"):
            body.append(f"\n→ {check.fix}", style="italic" if check.status == "warn" else "italic red")
        row: list[Text | str] = [Text(mark, style=style), body]
        if self.show_timings:
            row.append("" if check.duration_ms is None else f"{check.duration_ms:.0f} ms")
        table.add_row(*row)
        return table

    def check(self, check_id: str) -> HealthCheck | None:
        """The check of the last report with this id."""
        if self.report is None:
            return None
        return next((check for check in self.report.checks if check.check_id == check_id), None)

    @on(OptionList.OptionSelected, "#health-checks")
    def _check_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_id is not None:
            self.post_message(self.DetailsWanted(event.option_id))

    def details(self) -> Text:
        """Every check of the last report in full (summary, detail and fix, never cut), failures first."""
        if self.report is None:
            return Text("Not checked yet: F5 runs the health checks, Shift+F5 (or F10) the probes.", style="dim")
        text = Text()
        text.append_text(self.report.headline())
        text.append("\n\n")
        for model_id, reason in self.report.unavailable:
            text.append("unavailable ", style="yellow")
            text.append(model_id, style="bold")
            text.append(f": {reason}\n")
        if self.report.unavailable:
            text.append("\n")
        for check in self.report.by_urgency():
            text.append_text(check.full_text())
            text.append("\n")
        return text

    def _draw_latency(self) -> None:
        label = self.query_one("#health-latency-label", Static)
        if not self.latency_ms:
            label.update(Text("gateway latency: not measured yet", style="dim"))
        elif self.show_timings:
            last = self.latency_ms[-1]
            label.update(f"gateway latency  last {last:.0f} ms  max {max(self.latency_ms):.0f} ms")
        else:
            label.update(f"gateway latency  {len(self.latency_ms)} samples")
        spark = self.query_one("#health-latency-spark", Sparkline)
        spark.data = list(self.latency_ms)
        spark.display = len(self.latency_ms) > 1
