"""Record a real LiteLLM proxy's answers into ``tests/transcripts/litellm-*.json``.

    python3 bootstrap.py test --live-gateways     # installs .tools/litellm on first use
    PYTHONPATH=src:tests .venv/bin/python tests/transcripts/record_litellm.py

Each transcript keeps the status, headers and body of every exchange (a streamed answer with
its SSE framing), the LiteLLM version and the proxy config it ran with (keys replaced), and
what the diagnosis must conclude. The fast suite replays them through the reference gateway.
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from litellm_proxy import MASTER_KEY, Proxy, running_proxy  # noqa: E402
from nexus_core.gateway import ReferenceGateway  # noqa: E402
from nexus_core.secrets import REDACTED, Redactor  # noqa: E402

_DROPPED = frozenset({"date", "content-length", "transfer-encoding"})
BAD_KEY = "sk-not-the-master-key-0000"

# name → (description, what the diagnosis must conclude, [(method, path, auth, model)])
SITUATIONS: dict[str, tuple[str, dict[str, Any], list[tuple[str, str, str, str | None]]]] = {
    "litellm-ok": (
        "a healthy mock model: the model list and a streamed answer (SSE framing, usage, [DONE])",
        {"cause": "ok"},
        [("GET", "/models", "good", None), ("POST", "/chat/completions", "good", "mock-ok")],
    ),
    "litellm-bad-key": (
        "a key that is not the master key, on a proxy without a database: LiteLLM answers 400 'No connected db.'",
        {"cause": "auth_rejected", "failure": "auth", "probe_cause": "unauthorized"},
        [("GET", "/models", "bad", None), ("POST", "/chat/completions", "bad", "mock-ok")],
    ),
    "litellm-missing-key": (
        "no Authorization header at all: LiteLLM answers a bare 500 'Internal Server Error' (text/plain)",
        {"cause": "auth_missing", "failure": "auth", "probe_cause": "unauthorized"},
        [("GET", "/models", "none", None), ("POST", "/chat/completions", "none", "mock-ok")],
    ),
    "litellm-unknown-model": (
        "a model the proxy does not serve: 400 'Invalid model name passed in model=…'",
        {"cause": "model_not_found", "failure": "model_not_found", "probe_cause": "model_not_served"},
        [("GET", "/models", "good", None), ("POST", "/chat/completions", "good", "no-such-model")],
    ),
    "litellm-rate-limited": (
        "mock_response litellm.RateLimitError: 429 'litellm.RateLimitError: …'",
        {"cause": "rate_limited", "failure": "rate_limited", "probe_cause": "rate_limited"},
        [("GET", "/models", "good", None), ("POST", "/chat/completions", "good", "mock-rate-limited")],
    ),
    "litellm-context-overflow": (
        "mock_response litellm.ContextWindowExceededError: 400 'litellm.ContextWindowExceededError: …'",
        {"cause": "context_overflow", "failure": "bad_request", "probe_cause": "context_overflow"},
        [("GET", "/models", "good", None), ("POST", "/chat/completions", "good", "mock-context")],
    ),
    "litellm-upstream-error": (
        "mock_response litellm.InternalServerError: 500 'litellm.InternalServerError: …'",
        {"cause": "upstream_down", "failure": "gateway_error", "probe_cause": "server_error"},
        [("GET", "/models", "good", None), ("POST", "/chat/completions", "good", "mock-server-error")],
    ),
    "litellm-upstream-down": (
        "a deployment whose api_base is a closed port: 500 'litellm.InternalServerError: … Connection error.'",
        {"cause": "upstream_down", "failure": "gateway_error", "probe_cause": "server_error"},
        [("GET", "/models", "good", None), ("POST", "/chat/completions", "good", "mock-upstream-down")],
    ),
    "litellm-upstream-auth": (
        "a deployment whose upstream (a reference gateway) rejects the proxy's own key: 401 'litellm.AuthenticationError: …'",
        {"cause": "upstream_auth", "failure": "gateway_error", "probe_cause": "upstream_auth"},
        [("GET", "/models", "good", None), ("POST", "/chat/completions", "good", "mock-upstream-auth")],
    ),
}


def _key(auth: str) -> str | None:
    return {"good": MASTER_KEY, "bad": BAD_KEY, "none": None}[auth]


def _exchange(proxy: Proxy, method: str, path: str, auth: str, model: str | None, redact: Redactor) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {_key(auth)}"} if _key(auth) else {}
    body = None
    if method == "POST":
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Reply with the single word OK."}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 16,
        }
    with httpx.stream(method, proxy.base_url + path, headers=headers, json=body, timeout=30) as response:
        text = response.read().decode("utf-8", errors="replace")
    return {
        "request": {"method": method, "path": f"/v1{path}", "auth": auth, "model": model, "stream": body is not None},
        "response": {
            "status": response.status_code,
            "reason": response.reason_phrase,
            "headers": [[k, redact(v)] for k, v in response.headers.items() if k.lower() not in _DROPPED],
            "body": redact(text),
        },
    }


def _public_config(config: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(config).replace(MASTER_KEY, REDACTED)
    return json.loads(text)


def main() -> int:
    redact = Redactor([MASTER_KEY])
    with (
        tempfile.TemporaryDirectory() as tmp,
        ReferenceGateway(api_key="sk-upstream-right") as upstream,
        running_proxy(Path(tmp), upstream=upstream.base_url) as proxy,
    ):
        recorded = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
        for name, (description, expect, requests) in SITUATIONS.items():
            exchanges = [_exchange(proxy, m, p, a, model, redact) for m, p, a, model in requests]
            transcript = {
                "name": name,
                "gateway": "LiteLLM proxy",
                "description": description,
                "source": {
                    "software": f"litellm[proxy] {proxy.version} from PyPI, run by tests/litellm_proxy.py",
                    "recorded": recorded,
                    "how": "python tests/transcripts/record_litellm.py (loopback, master key, mock models)",
                    "proxy_config": _public_config(proxy.config),
                },
                "expect": expect,
                "exchanges": exchanges,
            }
            (HERE / f"{name}.json").write_text(json.dumps(transcript, indent=2) + "\n", encoding="utf-8")
            print(name, [e["response"]["status"] for e in exchanges])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
