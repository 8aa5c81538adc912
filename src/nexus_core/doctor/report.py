"""The doctor's report: one :class:`Check` per step, and the bounded runner each check goes through."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["Check", "CheckStatus", "DoctorReport", "Timer", "bounded", "skipped"]

CheckStatus = Literal["ok", "warn", "fail", "skipped"]


class Check(BaseModel):
    """One check's verdict. ``cause`` is a stable machine-readable reason when not ok."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    status: CheckStatus
    summary: str
    detail: str = ""
    fix: str = ""
    cause: str | None = None
    duration_ms: float = 0.0
    data: dict[str, Any] = {}


class DoctorReport(BaseModel):
    """Every check, in a stable order, and the figures the dashboard shows.

    ``ok`` is true when no check failed (warnings allowed); ``gateway_latency_ms`` is the total
    time of the first gateway's ``GET /models`` when it answered, else ``None``.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    project_dir: str
    probe: bool
    ok: bool
    counts: dict[str, int]
    duration_ms: float
    opencode_version: str | None = None
    gateway_latency_ms: float | None = None
    checks: list[Check]

    def get(self, check_id: str) -> Check | None:
        """The check with this id, or None."""
        return next((c for c in self.checks if c.id == check_id), None)

    def check(self, check_id: str) -> Check:
        """The check with this id; ``KeyError`` naming the ids there are when the report has none."""
        found = self.get(check_id)
        if found is None:
            raise KeyError(f"no check {check_id!r} in this report; it has {', '.join(c.id for c in self.checks)}")
        return found

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 otherwise (the CLI's exit code)."""
        return 0 if self.ok else 1


class Timer:
    """Milliseconds since it was made."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def ms(self) -> float:
        return round((time.perf_counter() - self.start) * 1000, 1)


async def bounded(check_id: str, title: str, limit: float, make: Callable[[], Awaitable[Check]]) -> Check:
    """Run one check within ``limit`` seconds; overrunning, or crashing, is itself a failed check."""
    timer = Timer()
    try:
        async with asyncio.timeout(limit):
            return await make()
    except OSError as exc:
        return Check(
            id=check_id,
            title=title,
            status="fail",
            cause="check_error",
            summary=f"the check could not run: {exc.strerror or exc}",
            fix="see the summary; run the doctor again once it is fixed",
            duration_ms=timer.ms(),
        )
    except TimeoutError:
        return Check(
            id=check_id,
            title=title,
            status="fail",
            cause="check_timeout",
            summary=f"did not finish within {limit:g} s",
            fix="run `nexus-agents doctor` again; if it persists, see the other checks",
            duration_ms=timer.ms(),
        )


def skipped(check_id: str, title: str, why: str) -> Check:
    """A check that could not run, and why."""
    return Check(id=check_id, title=title, status="skipped", summary=why)
