"""Helpers for the dashboard's tests: a project on disk, an app that records its messages, polling."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.notifications import SeverityLevel
from textual.pilot import Pilot

from nexus_core.opencode.attempt import AttemptResult
from nexus_core.opencode.events import (
    AttemptFinished,
    AttemptStarted,
    FailureClass,
    Outcome,
    StepFinish,
    StepStart,
    Text,
    TokenUsage,
)
from nexus_core.routing.chain import DelegationResult, DelegationSpec
from nexus_core.routing.registry import ModelProfile
from nexus_core.store.recorder import DelegationRecorder
from nexus_core.store.runs import RunStore
from nexus_tui.app import NexusApp
from nexus_tui.widgets.runs import RunView

SIZE = (140, 45)
SONNET_ID = "opencode-custom-sonnet"
SONNET = "custom/claude-sonnet-4-5"
# Nothing listens here: the config is complete, and the gateway is simply down.
CLOSED_GATEWAY = "http://127.0.0.1:9/v1"


def write_project(
    root: Path, base_url: str = CLOSED_GATEWAY, models: dict[str, Any] | None = None, default: str | None = None
) -> Path:
    """A project directory whose opencode.json declares the custom provider at ``base_url``."""
    project = root / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "opencode.json").write_text(json.dumps(project_config(base_url, models, default), indent=2))
    return project


def project_config(base_url: str, models: dict[str, Any] | None = None, default: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "custom": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Custom Gateway",
                "options": {"baseURL": base_url, "apiKey": "{env:CUSTOM_API_KEY}"},
                "models": models
                or {
                    "claude-opus-4-5": {"name": "Claude Opus 4.5", "limit": {"context": 200000, "output": 65536}},
                    "claude-sonnet-4-5": {"name": "Claude Sonnet 4.5", "limit": {"context": 200000, "output": 65536}},
                },
            }
        },
    }
    if default:
        config["model"] = default
    return config


@dataclass(frozen=True)
class Notice:
    """One notification the app showed (what :meth:`RecordingApp.notify` was given)."""

    message: str
    title: str
    severity: SeverityLevel


class RecordingApp(NexusApp):
    """The dashboard, keeping every message posted anywhere in it (through ``run_test``'s ``message_hook``)
    and every notification it showed (through its public ``notify``, which widgets' ``notify`` calls too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: list[Message] = []
        self.notices: list[Notice] = []
        self._seen_ids: set[int] = set()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        self.notices.append(Notice(message, title, severity))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def record(self, message: Message) -> None:
        # A bubbling message reaches the hook once per node it passes: keep it once.
        if id(message) not in self._seen_ids:
            self._seen_ids.add(id(message))
            self.messages.append(message)

    def run_test(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("message_hook", self.record)
        return super().run_test(*args, **kwargs)

    def seen(self, kind: type[Message]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]


def quiet_app(tmp_path: Path, env: dict[str, str]) -> RecordingApp:
    """The dashboard over a fixed project with nothing in the background (no config watch, no
    health check) and a short scoring debounce."""
    options = {"test_mode": True, "watch_config": False, "check_health": False, "debounce": 0.01}
    return RecordingApp(write_project(tmp_path), env=env, **options)


async def open_run(app: NexusApp, task: str) -> RunView:
    """A new run view for ``task``, mounted in its tab and in view."""
    view = app.new_run_view(task)
    await app.show_run_view(view)
    return view


async def until(
    pilot: Pilot[Any], condition: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition`` between pilot pauses until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.02)


async def settle(pilot: Pilot[Any]) -> None:
    """Let workers finish and the screen refresh."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await asyncio.sleep(0)


def seed_run(
    store: RunStore,
    project: Path,
    task: str,
    reply: str,
    *,
    ok: bool = True,
    session_id: str = "ses_seeded0001",
    model_id: str = SONNET_ID,
) -> str:
    """One finished delegation recorded as the CLI records it: attempt, step, text, outcome."""
    profile = ModelProfile(id=model_id, name=model_id, provider="custom", cli_model_name=SONNET, source="opencode.json")
    recorder = DelegationRecorder.begin(store, DelegationSpec(prompt=task, chain=(profile,)), project=project)
    recorder.see(AttemptStarted(attempt=1, model_id=model_id, cli_model_name=SONNET))
    recorder.see(StepStart(attempt=1, session_id=session_id))
    outcome = Outcome(message="answered") if ok else Outcome(failure=FailureClass.GATEWAY_ERROR, message="HTTP 500")
    if ok:
        recorder.see(Text(attempt=1, text=reply))
    recorder.see(StepFinish(attempt=1, reason="stop", tokens=TokenUsage(input=12, output=5)))
    recorder.see(AttemptFinished(attempt=1, cli_model_name=SONNET, outcome=outcome))
    attempt = AttemptResult(
        attempt=1,
        cli_model_name=SONNET,
        model_id=model_id,
        outcome=outcome,
        text=reply if ok else "",
        session_id=session_id,
    )
    recorder.finish(DelegationResult(attempts=(attempt,), duration_s=1.5), wait=True)
    return recorder.run_id
