"""The MCP server's job tools: tasks that outlive one tool call.

OpenCode gives an MCP tool call 60 s by default; a delegation can take far longer. ``start_task``
starts the delegation in the server's event loop and returns its ``run_id`` at once;
``task_status`` follows it (state, model, attempt, elapsed, the last lines of the answer),
``task_result`` gives the answer and every attempt (or the failure), ``cancel_task`` ends it and
its OpenCode process tree, ``list_runs`` lists this project's runs from the run store.

Jobs are recorded in the run store like every delegation (unless history is off, when they live
only in this server's memory). When the server exits, its jobs are ended and recorded as
cancelled, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from nexus_core.opencode.events import AttemptStarted, RunEvent, Text
from nexus_core.routing.chain import Delegation, DelegationResult, DelegationSpec
from nexus_core.store.recorder import DelegationRecorder, history_store, recorded
from nexus_core.store.runs import RunStore

__all__ = ["JobAttempt", "JobList", "JobManager", "JobResult", "JobStarted", "JobStatus"]

JobState = Literal["running", "ok", "failed", "cancelled", "interrupted"]
END_WAIT_S = 20.0
SERVER_EXIT = "the MCP server exited before the run finished (its OpenCode processes were ended)"
TAIL_LINES = 20


class JobStarted(BaseModel):
    """What ``start_task`` returns."""

    run_id: str
    model: str
    chain: list[str]
    routing_reason: str
    next_step: str


class JobStatus(BaseModel):
    """What ``task_status`` (and ``cancel_task``) returns."""

    run_id: str
    state: JobState
    model: str | None
    attempt: int | None
    elapsed_s: float
    last_lines: list[str]
    message: str | None = None


class JobAttempt(BaseModel):
    """One model a job tried."""

    attempt: int
    model_id: str | None
    cli_model_name: str
    ok: bool
    failure: str | None
    message: str | None


class JobResult(BaseModel):
    """What ``task_result`` returns for a finished job."""

    run_id: str
    state: JobState
    ok: bool
    text: str
    model_used: str | None
    attempts: list[JobAttempt]
    failure: str | None
    message: str | None
    duration_s: float | None


class JobSummary(BaseModel):
    """One row of ``list_runs``."""

    run_id: str
    state: JobState
    task: str
    model: str | None
    source: str
    started_at: float
    finished_at: float | None
    failure: str | None


class JobList(BaseModel):
    """What ``list_runs`` returns."""

    runs: list[JobSummary]
    history: bool


@dataclass
class _Job:
    run_id: str
    task: str
    delegation: Delegation
    recorder: DelegationRecorder | None
    started_at: float = field(default_factory=time.time)
    attempt: int | None = None
    model: str | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    runner: asyncio.Task[None] | None = None
    finished_at: float | None = None
    ended_by: str | None = None

    def see(self, event: RunEvent) -> None:
        if isinstance(event, Text):
            self.tail.extend(event.text.splitlines()[-TAIL_LINES:])
        elif isinstance(event, AttemptStarted):
            self.attempt, self.model = event.attempt, event.model_id or event.cli_model_name

    @property
    def result(self) -> DelegationResult | None:
        return self.delegation.result

    def state(self) -> JobState:
        if self.finished_at is None:
            return "running"
        result = self.result
        if self.ended_by or self.delegation._cancelled or result is None:
            return "cancelled"
        if result.ok:
            return "ok"
        return "cancelled" if result.outcome.failure == "cancelled" else "failed"


class JobManager:
    """The jobs of one server, for the project in ``directory``."""

    def __init__(self, directory: Path, env: Mapping[str, str]) -> None:
        self.directory = directory
        self.env = env
        self._jobs: dict[str, _Job] = {}
        self._store: RunStore | None = None
        self._store_opened = False

    @property
    def store(self) -> RunStore | None:
        """The run store (opened on first use; None when history is off or it cannot be opened)."""
        if not self._store_opened:
            self._store_opened = True
            self._store = history_store(self.env)
        return self._store

    # ------------------------------------------------------------ the tools

    def start(self, spec: DelegationSpec, *, decision: Any, task: str, reason: str = "") -> JobStarted:
        """Start ``spec`` in the background; its run id at once (``reason``: why its first model,
        when routing's ``decision`` has none to give)."""
        store = self.store
        recorder = (
            DelegationRecorder.begin(
                store, spec, decision=decision, source="mcp-job", project=self.directory, task=task
            )
            if store is not None
            else None
        )
        run_id = recorder.run_id if recorder is not None else f"job-{secrets.token_hex(6)}"
        job = _Job(run_id=run_id, task=task, delegation=Delegation(spec), recorder=recorder)
        job.runner = asyncio.get_running_loop().create_task(self._drive(job), name=f"nexus-job-{run_id}")
        self._jobs[run_id] = job
        chain = [m.id for m in spec.chain]
        return JobStarted(
            run_id=run_id,
            model=chain[0],
            chain=chain,
            routing_reason=getattr(decision, "reason", "") or reason,
            next_step=f"call task_status with run_id {run_id!r} to follow it, task_result when it is done",
        )

    async def _drive(self, job: _Job) -> None:
        try:
            async with job.delegation as delegation:
                async for event in recorded(delegation.events(), job.recorder, delegation):
                    job.see(event)
        except Exception as exc:  # a job's failure is its result, never the server's
            job.ended_by = job.ended_by or f"the run failed unexpectedly ({type(exc).__name__}: {exc})"
        finally:
            job.finished_at = time.time()

    def status(self, run_id: str) -> JobStatus:
        """Where ``run_id`` is now."""
        job = self._jobs.get(run_id)
        if job is None:
            return self._stored_status(run_id)
        end = job.finished_at or time.time()
        result = job.result
        message = job.ended_by
        if message is None and job.finished_at is not None and result is not None:
            message = result.outcome.sentence()
        return JobStatus(
            run_id=run_id,
            state=job.state(),
            model=job.model,
            attempt=job.attempt,
            elapsed_s=round(end - job.started_at, 3),
            last_lines=list(job.tail),
            message=message,
        )

    def result(self, run_id: str) -> JobResult:
        """The answer of a finished ``run_id`` and its attempts, or the failure."""
        job = self._jobs.get(run_id)
        if job is None:
            return self._stored_result(run_id)
        if job.finished_at is None:
            elapsed = time.time() - job.started_at
            raise ToolError(
                f"Run {run_id} is still running ({job.model or 'starting'}, attempt {job.attempt or 1}, "
                f"{elapsed:.0f} s). Call task_status to follow it, and task_result again when it is done."
            )
        result = job.result
        attempts = [
            JobAttempt(
                attempt=a.attempt,
                model_id=a.model_id,
                cli_model_name=a.cli_model_name,
                ok=a.outcome.ok,
                failure=str(a.outcome.failure) if a.outcome.failure else None,
                message=a.outcome.sentence(),
            )
            for a in (result.attempts if result is not None else ())
        ]
        outcome = result.outcome if result is not None else None
        return JobResult(
            run_id=run_id,
            state=job.state(),
            ok=bool(result is not None and result.ok),
            text=result.text if result is not None else "",
            model_used=result.final.model_id if result is not None else None,
            attempts=attempts,
            failure=str(outcome.failure) if outcome is not None and outcome.failure else None,
            message=job.ended_by or (outcome.sentence() if outcome is not None else "ended before any model was tried"),
            duration_s=result.duration_s if result is not None else None,
        )

    async def cancel(self, run_id: str) -> JobStatus:
        """End ``run_id`` and its process tree; its status once it has ended."""
        job = self._jobs.get(run_id)
        if job is None:
            stored = self._stored_status(run_id)
            if stored.state != "running":
                return stored
            raise ToolError(
                f"Run {run_id} was not started by this server, so it cannot be cancelled here. "
                "Cancel it where it runs (the dashboard or the CLI that started it)."
            )
        await self._end(job, "cancelled by cancel_task")
        return self.status(run_id)

    async def _end(self, job: _Job, why: str) -> None:
        if job.finished_at is None:
            job.ended_by = why
            if job.recorder is not None:
                job.recorder.end_message = why
            job.delegation.cancel()
            if job.runner is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(job.runner), END_WAIT_S)
                if not job.runner.done():  # the tree did not end in time: stop waiting for it politely
                    job.runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await job.runner

    def list(self, *, limit: int = 20, failed: bool = False, all_projects: bool = False) -> JobList:
        """This project's runs, newest first (the run store's, or this server's jobs when history is off)."""
        store = self.store
        if store is None:
            jobs = sorted(self._jobs.values(), key=lambda j: j.started_at, reverse=True)
            rows = [
                JobSummary(
                    run_id=j.run_id,
                    state=j.state(),
                    task=j.task,
                    model=j.model,
                    source="mcp-job",
                    started_at=j.started_at,
                    finished_at=j.finished_at,
                    failure=j.ended_by,
                )
                for j in jobs
                if not failed or j.state() in ("failed", "interrupted")
            ]
            return JobList(runs=rows[:limit], history=False)
        summaries = store.list_runs(limit=limit, project=self.directory, all_projects=all_projects, failed=failed)
        return JobList(
            runs=[
                JobSummary(
                    run_id=s.id,
                    state=self._jobs[s.id].state() if s.id in self._jobs else s.status,
                    task=s.task,
                    model=s.chosen_model,
                    source=s.source,
                    started_at=s.started_at,
                    finished_at=s.finished_at,
                    failure=s.outcome_class,
                )
                for s in summaries
            ],
            history=True,
        )

    # ------------------------------------------------------------ runs of other processes

    def _detail(self, run_id: str) -> Any:
        store = self.store
        detail = store.show(run_id) if store is not None else None
        if detail is None:
            raise ToolError(f"No run has the id {run_id!r}. Call list_runs to see this project's runs.")
        return detail

    def _stored_status(self, run_id: str) -> JobStatus:
        detail = self._detail(run_id)
        s = detail.summary
        last = detail.attempts[-1] if detail.attempts else None
        end = s.finished_at or time.time()
        return JobStatus(
            run_id=run_id,
            state=s.status,
            model=(last.model_id or last.cli_model_name) if last else s.chosen_model,
            attempt=last.number if last else None,
            elapsed_s=round(end - s.started_at, 3),
            last_lines=detail.final_text.splitlines()[-TAIL_LINES:],
            message=s.outcome_message,
        )

    def _stored_result(self, run_id: str) -> JobResult:
        detail = self._detail(run_id)
        s = detail.summary
        if s.status == "running":
            raise ToolError(f"Run {run_id} is still running (in another process). Call task_result again later.")
        return JobResult(
            run_id=run_id,
            state=s.status,
            ok=s.status == "ok",
            text=detail.final_text,
            model_used=s.chosen_model,
            attempts=[
                JobAttempt(
                    attempt=a.number,
                    model_id=a.model_id,
                    cli_model_name=a.cli_model_name,
                    ok=a.finished_at is not None and a.outcome_class is None,
                    failure=a.outcome_class,
                    message=a.outcome_message,
                )
                for a in detail.attempts
            ],
            failure=s.outcome_class,
            message=s.outcome_message,
            duration_s=round(s.finished_at - s.started_at, 3) if s.finished_at else None,
        )

    # ------------------------------------------------------------ the server's life

    @contextlib.asynccontextmanager
    async def lifespan(self, _server: object) -> AsyncIterator[None]:
        """The server's lifespan: when it ends, every job still running is ended and recorded so."""
        try:
            yield
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """End every running job (marked as ended by the server's exit) and close the store."""
        running = [job for job in self._jobs.values() if job.finished_at is None]
        # Recorded first: the client gives a closing server a couple of seconds before it kills the
        # tree, and ending OpenCode's processes politely can take longer than that on a busy machine.
        recorders = [job.recorder for job in running if job.recorder is not None]
        for recorder in recorders:
            recorder.finish(None, cancelled=True, message=SERVER_EXIT)
        if recorders and self._store is not None:
            await asyncio.to_thread(self._store.flush)
        if running:
            await asyncio.gather(*(self._end(job, SERVER_EXIT) for job in running), return_exceptions=True)
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
            self._store = None

    def flush(self) -> None:
        """Commit the store's queued writes (so the next routing reads them)."""
        if self._store is not None:
            self._store.flush()
