"""``nexus-tui --web``: textual-serve on 127.0.0.1 serves the dashboard's page over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx

from nexus_tui.web import web_command
from tui_support import write_project


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def read_session(port: int, *wanted: bytes, timeout: float = 60) -> bytes:
    """Connect as the page does and collect the terminal output until every ``wanted`` piece has arrived."""
    received = b""
    url = f"ws://127.0.0.1:{port}/ws?width=120&height=40"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as websocket:
        deadline = time.monotonic() + timeout
        while not all(piece in received for piece in wanted):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                message = await websocket.receive(timeout=left)
            except TimeoutError:
                break
            if message.type == aiohttp.WSMsgType.BINARY:
                received += message.data
            elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    return received


def test_web_serves_the_dashboard_page(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = write_project(tmp_path)
    port = free_port()
    env = hermetic_env | {"PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "nexus_tui", "--web", "--port", str(port), "--dir", str(project)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        page = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert page is not None, (
            process.stderr.read().decode() if process.stderr and process.poll() is not None else "no answer"
        )
        assert page.status_code == 200
        assert "xterm" in page.text and f"ws://127.0.0.1:{port}/ws" in page.text
        # What a browser does next: open the websocket; the server starts a dashboard that draws into it.
        drawn = asyncio.run(read_session(port, b"Models", b"Runs"))
        assert b"Models" in drawn and b"Runs" in drawn
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def test_the_web_command_is_quoted_argv() -> None:
    command = web_command("/tmp/a dir; rm -rf x", demo=True)
    assert command.startswith(f"{sys.executable} -m nexus_tui --demo --dir ")
    assert "'/tmp/a dir; rm -rf x'" in command


def test_port_without_web_and_a_taken_port_are_one_sentence(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    env = hermetic_env | {"PYTHONPATH": os.pathsep.join(sys.path)}
    lone = subprocess.run(
        [sys.executable, "-m", "nexus_tui", "--port", "9"], env=env, capture_output=True, text=True, timeout=30
    )
    assert lone.returncode == 2 and "--port goes with --web" in lone.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [sys.executable, "-m", "nexus_tui", "--web", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert busy.returncode == 2 and "already in use" in busy.stderr and "Traceback" not in busy.stderr
