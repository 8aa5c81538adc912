"""A real LiteLLM proxy (PyPI ``litellm[proxy]``) on loopback, with mock models and a master key.

Used by ``tests/transcripts/record_litellm.py`` (which writes the wire transcripts the fast suite
replays) and by the opt-in live tier (``python3 bootstrap.py test --live-gateways``). The proxy
runs from its own venv, ``.tools/litellm`` (bootstrap.py installs it on first use), with its
process group ended on exit.

The mock models answer without any network: ``mock_response`` is LiteLLM's own switch, and
the strings ``litellm.RateLimitError``, ``litellm.ContextWindowExceededError`` and
``litellm.InternalServerError`` make it raise those errors (litellm/main.py
``_handle_mock_potential_exceptions``). ``upstream-down`` points at a closed port (a real
connection error) and ``upstream-auth`` at a reference gateway that rejects the proxy's key.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-litellm-master-" + secrets.token_hex(8)
START_TIMEOUT_S = 90.0

#: model name → litellm_params (besides ``model``); ``{upstream}`` is filled in by :func:`running_proxy`.
MOCK_MODELS: dict[str, dict[str, object]] = {
    "mock-ok": {"model": "openai/mock-ok", "mock_response": "OK"},
    "mock-ok-2": {"model": "openai/mock-ok-2", "mock_response": "OK"},
    "mock-rate-limited": {"model": "openai/mock-rl", "mock_response": "litellm.RateLimitError"},
    "mock-context": {"model": "openai/mock-ctx", "mock_response": "litellm.ContextWindowExceededError"},
    "mock-server-error": {"model": "openai/mock-500", "mock_response": "litellm.InternalServerError"},
}


def litellm_home(root: Path = ROOT) -> Path:
    """Where bootstrap.py installs the proxy (``NEXUS_LITELLM_HOME`` overrides)."""
    return Path(os.environ.get("NEXUS_LITELLM_HOME") or root / ".tools" / "litellm")


def litellm_version(home: Path) -> str:
    out = subprocess.run(
        [str(home / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() or "unknown"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proxy:
    """A running proxy: its API root, master key, version and the config it was started with."""

    base_url: str
    master_key: str
    version: str
    config: dict[str, object]


def _config(upstream: str | None) -> dict[str, object]:
    models = [{"model_name": name, "litellm_params": dict(params)} for name, params in MOCK_MODELS.items()]
    closed = _free_port()  # nothing listens there: a real connection error upstream
    models.append(
        {
            "model_name": "mock-upstream-down",
            "litellm_params": {"model": "openai/down", "api_base": f"http://127.0.0.1:{closed}/v1", "api_key": "sk-x"},
        }
    )
    if upstream:
        models.append(
            {
                "model_name": "mock-upstream-auth",
                "litellm_params": {
                    "model": "openai/claude-sonnet-4-5",
                    "api_base": upstream,
                    "api_key": "sk-wrong-upstream",
                },
            }
        )
    return {
        "model_list": models,
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"num_retries": 0, "request_timeout": 10, "telemetry": False},
        "router_settings": {"num_retries": 0, "allowed_fails": 1000, "cooldown_time": 0},
    }


@contextlib.contextmanager
def running_proxy(workdir: Path, upstream: str | None = None, home: Path | None = None) -> Iterator[Proxy]:
    """Start ``litellm --config`` on a free loopback port; yield when ``/health/liveliness`` answers."""
    home = home or litellm_home()
    exe = home / "bin" / "litellm"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} is missing: run `python3 bootstrap.py test --live-gateways` once to install it")
    config = _config(upstream)
    path = workdir / "litellm.json"
    # LiteLLM reads YAML; JSON is YAML.
    path.write_text(json.dumps(config))
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_", "DATABASE_URL"))},
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_MODE": "PRODUCTION",
        "NO_DOCS": "True",
    }
    log = (workdir / "litellm.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "--config", str(path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"litellm exited with {proc.returncode}: {(workdir / 'litellm.log').read_text()[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health/liveliness", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"litellm did not answer within {START_TIMEOUT_S:g} s")
            time.sleep(0.25)
        yield Proxy(f"{base}/v1", MASTER_KEY, litellm_version(home), config)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
