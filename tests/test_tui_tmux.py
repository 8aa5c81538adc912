"""The task editor in a real terminal (tmux): keys typed in one burst and a bracketed paste."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

HOST = Path(__file__).with_name("tmux_editor_host.py")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True, timeout=10).stdout


def submitted(record: Path) -> list[str]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_a_burst_stays_two_tasks_and_a_paste_stays_whole(tmp_path: Path) -> None:
    record = tmp_path / "submitted.jsonl"
    session = f"nexus-editor-{os.getpid()}"
    env = f"PYTHONPATH={os.pathsep.join(sys.path)}"
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", f"env {env} {sys.executable} {HOST} {record}")
    try:
        wait_for(lambda: "Describe a task" in tmux("capture-pane", "-t", session, "-p"))
        # One write: text, Enter, more text, Enter — what a fast typist (or a script) produces.
        tmux("send-keys", "-t", session, "fix the flaky login test", "Enter", "rename the helper", "Enter")
        wait_for(lambda: len(submitted(record)) == 2)
        assert submitted(record) == ["fix the flaky login test", "rename the helper"]

        traceback = 'Traceback (most recent call last):\n  File "app.py", line 3\nValueError: bad'
        tmux("set-buffer", "-b", session, traceback)
        tmux("paste-buffer", "-p", "-b", session, "-t", session)  # -p: bracketed, as terminals paste
        tmux("send-keys", "-t", session, "Enter")
        wait_for(lambda: len(submitted(record)) == 3)
        assert submitted(record)[2] == traceback
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True, timeout=10)
