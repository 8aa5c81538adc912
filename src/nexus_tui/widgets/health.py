"""The health panel: doctor's checks with colour, timing and fix, and the gateway's latency history."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Sparkline, Static

__all__ = ["HealthCheck", "HealthPanel", "HealthReport"]

LATENCY_HISTORY = 40
# Failures first: what needs doing is never below the fold.
STATUS_ORDER = {"fail": 0, "warn": 1, "ok": 2, "skipped": 3}

STATUS_MARK = {
    "ok": ("✓", "bold green"),
    "warn": ("!", "bold yellow"),
    "fail": ("✗", "bold red"),
    "skipped": ("–", "dim"),
}


@dataclass(frozen=True)
class HealthCheck:
    """One doctor check as the panel draws it."""

    check_id: str
    status: str
    summary: str
    fix: str = ""
    duration_ms: float | None = None


@dataclass(frozen=True)
class HealthReport:
    """A doctor run: its checks and, when the gateway was reached, its latency."""

    checks: tuple[HealthCheck, ...]
    gateway_latency_ms: float | None = None

    @property
    def failed(self) -> int:
        return sum(1 for check in self.checks if check.status == "fail")

    def by_urgency(self) -> list[HealthCheck]:
        """The checks, failures first, then warnings, then the rest (each group in doctor's order)."""
        return sorted(self.checks, key=lambda check: STATUS_ORDER.get(check.status, 1))


class HealthPanel(Vertical):
    """Doctor's verdicts, re-run on demand (the Re-probe command) and after every config reload.

    Enter (or ``d``) in the panel opens every check in full.
    """

    BINDINGS = [Binding("enter,d", "app.health_details", "Details", id="health.details")]

    def __init__(self, *, show_timings: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.show_timings = show_timings
        self.report: HealthReport | None = None
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self.running = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="health-checks"):
            yield Static(Text("Not checked yet: F5 runs the health checks.", style="dim"), id="health-body")
        with Vertical(id="health-latency"):
            yield Static("gateway latency", id="health-latency-label")
            yield Sparkline([], id="health-latency-spark", min_color="green", max_color="red")

    def on_mount(self) -> None:
        self.border_title = "Health"

    def checking(self) -> None:
        """A doctor run started."""
        self.running = True
        self.border_subtitle = "checking…"
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
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(width=1)
        table.add_column(ratio=1)
        if self.show_timings:
            table.add_column(justify="right", style="dim", width=7)
        for check in report.by_urgency():
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
        failed = report.failed
        summary = Text(
            f"{failed} failing" if failed else "all checks pass",
            style="bold red" if failed else "bold green",
        )
        self.query_one("#health-body", Static).update(Group(summary, table))
        self.border_subtitle = f"{len(report.checks)} checks"
        if report.gateway_latency_ms is not None:
            self.latency_ms.append(report.gateway_latency_ms)
        self._draw_latency()

    def details(self) -> Text:
        """Every check of the last report in full (summary and fix, never cut), failures first."""
        if self.report is None:
            return Text("Not checked yet: F5 runs the health checks.", style="dim")
        text = Text()
        for check in self.report.by_urgency():
            mark, style = STATUS_MARK.get(check.status, ("?", "magenta"))
            text.append(f"{mark} ", style=style)
            text.append(check.check_id, style="bold")
            text.append(f"  [{check.status}]\n", style=style)
            text.append(f"  {check.summary}\n")
            if check.fix:
                text.append(f"  → {check.fix}\n", style="italic")
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
