"""The values widgets draw: small frozen dataclasses and enums, free of Textual.

The backend builds them from the core's results; the widgets take them. Neither side needs
the other's types (the widget modules re-export these under their old names).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from rich.text import Text

__all__ = [
    "STATUS_MARK",
    "STATUS_ORDER",
    "Breakdown",
    "HealthCheck",
    "HealthReport",
    "RankedModel",
    "RunRequest",
    "RunStatus",
]

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
    detail: str = ""
    title: str = ""
    cause: str | None = None

    def full_text(self) -> Text:
        """The whole check, nothing cut: status, title, summary, detail, fix, cause."""
        mark, style = STATUS_MARK.get(self.status, ("?", "magenta"))
        text = Text()
        text.append(f"{mark} ", style=style)
        text.append(self.check_id, style="bold")
        text.append(f"  [{self.status}]", style=style)
        if self.title:
            text.append(f"  {self.title}", style="dim")
        text.append(f"\n  {self.summary}\n")
        if self.detail:
            for line in self.detail.splitlines():
                text.append(f"  {line}\n", style="dim")
        if self.fix:
            text.append(f"  → {self.fix}\n", style="italic")
        if self.cause:
            text.append(f"  cause: {self.cause}\n", style="dim")
        return text


@dataclass(frozen=True)
class HealthReport:
    """A doctor run: its checks and, when the gateway was reached, its latency."""

    checks: tuple[HealthCheck, ...]
    gateway_latency_ms: float | None = None
    #: (model id, reason) for each model routing leaves out because of this report.
    unavailable: tuple[tuple[str, str], ...] = ()
    probed: bool = False

    @property
    def failed(self) -> int:
        return sum(1 for check in self.checks if check.status == "fail")

    @property
    def warnings(self) -> int:
        return sum(1 for check in self.checks if check.status == "warn")

    def headline(self) -> Text:
        """``2 failing · 1 warning · 2 models unavailable``, or ``all checks pass`` only when nothing warns."""
        parts: list[tuple[str, str]] = []
        if self.failed:
            parts.append((f"{self.failed} failing", "bold red"))
        if self.warnings:
            parts.append((f"{self.warnings} warning{'s' if self.warnings != 1 else ''}", "bold yellow"))
        if not parts:
            parts.append(("all checks pass", "bold green"))
        if self.unavailable:
            count = len(self.unavailable)
            parts.append((f"{count} model{'s' if count != 1 else ''} unavailable", "yellow"))
        text = Text()
        for index, (part, style) in enumerate(parts):
            if index:
                text.append(" · ", style="dim")
            text.append(part, style=style)
        text.append("  (probed)" if self.probed else "  (Shift+F5 probes every model)", style="dim")
        return text

    def by_urgency(self) -> list[HealthCheck]:
        """The checks, failures first, then warnings, then the rest (each group in doctor's order)."""
        return sorted(self.checks, key=lambda check: STATUS_ORDER.get(check.status, 1))


class RunStatus(StrEnum):
    """Where a run is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


@dataclass(frozen=True)
class RankedModel:
    """One model's place in the ranking: its total and the named terms that add up to it."""

    model_id: str
    cli_model_name: str | None
    total: float
    terms: tuple[tuple[str, float], ...]
    skipped: str | None = None


@dataclass(frozen=True)
class Breakdown:
    """The routing result for one task text, as the panel draws it."""

    task: str
    ranked: tuple[RankedModel, ...]
    chosen: str | None
    fallback_chain: tuple[str, ...] = ()
    profile: str = ""
    problem: str | None = None


@dataclass(frozen=True)
class RunRequest:
    """Everything the user set before pressing Enter. ``model_id`` None means the top-ranked model."""

    task: str
    model_id: str | None = None
    variant: str | None = None
    thinking: bool = False
    workdir: Path | None = None
