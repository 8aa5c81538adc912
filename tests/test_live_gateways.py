"""The opt-in live tier: the doctor, the probe and orchestrate against a real LiteLLM proxy.

    python3 bootstrap.py test --live-gateways

LiteLLM proxy (PyPI, in ``.tools/litellm``) runs on loopback with a master key and the mock
models of tests/litellm_proxy.py, one per fault it can simulate: a rate limit, a context
overflow, an internal error, an unreachable upstream, an upstream that rejects the proxy's
own key. Skipped unless the live tier was asked for.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_cli
from litellm_proxy import MOCK_MODELS, Proxy, running_proxy
from nexus_core.doctor.checks import run_doctor
from nexus_core.gateway import ReferenceGateway, write_opencode_config

pytestmark = pytest.mark.live_gateway

BAD_KEY = "sk-live-wrong-" + secrets.token_hex(6)
FAULTY = {
    "mock-rate-limited": ("rate_limited", "rate_limited"),
    "mock-context": ("context_overflow", "bad_request"),
    "mock-server-error": ("server_error", "gateway_error"),
    "mock-upstream-down": ("server_error", "gateway_error"),
    "mock-upstream-auth": ("upstream_auth", "gateway_error"),
}
MODELS = [*MOCK_MODELS, "mock-upstream-down", "mock-upstream-auth"]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with (
        ReferenceGateway(api_key="sk-upstream-right") as upstream,
        running_proxy(tmp_path_factory.mktemp("litellm"), upstream=upstream.base_url) as running,
    ):
        yield running


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    return directory


def _env(hermetic_env: dict[str, str], key: str | None) -> dict[str, str]:
    return {**hermetic_env, **({"CUSTOM_API_KEY": key} if key else {})}


def _no_secret(text: str, proxy: Proxy) -> None:
    assert proxy.master_key not in text and proxy.master_key[12:] not in text and BAD_KEY not in text


def test_doctor_probe_finds_the_fault_on_each_model(project: Path, proxy: Proxy, hermetic_env: dict[str, str]) -> None:
    write_opencode_config(
        project,
        proxy.base_url,
        api_key_env="CUSTOM_API_KEY",
        models=MODELS,
        default_model="mock-ok",
        small_model="mock-ok-2",
    )
    report = asyncio.run(run_doctor(project, _env(hermetic_env, proxy.master_key), probe=True, smoke_timeout=60))
    assert report.check("gateway.custom").status == "ok"
    for model in ("mock-ok", "mock-ok-2"):
        assert report.check(f"probe.chat.custom.{model}").status in ("ok", "warn"), report.get(
            f"probe.chat.custom.{model}"
        )
    for model, (cause, _) in FAULTY.items():
        check = report.check(f"probe.chat.custom.{model}")
        assert check.status == "fail" and check.cause == cause, check
        assert check.summary.startswith("LiteLLM proxy: ")
    smoke = report.check("probe.opencode_run")
    assert smoke.status == "ok" and smoke.data["model"] == "custom/mock-ok", smoke
    _no_secret(report.model_dump_json(), proxy)


@pytest.mark.parametrize(("key", "expected"), [("bad", "key_rejected"), ("none", "key_unset")])
def test_doctor_blames_the_key_not_the_gateway(
    project: Path, proxy: Proxy, hermetic_env: dict[str, str], key: str, expected: str
) -> None:
    write_opencode_config(project, proxy.base_url, api_key_env="CUSTOM_API_KEY", models=["mock-ok"])
    env = _env(hermetic_env, BAD_KEY if key == "bad" else None)
    report = asyncio.run(run_doctor(project, env, probe=True))
    assert report.check("provider.custom.api_key").cause == expected
    gw = report.check("gateway.custom")
    assert gw.cause == "unauthorized" and "baseURL" not in gw.fix, gw
    _no_secret(report.model_dump_json(), proxy)


def _orchestrate(project: Path, env: dict[str, str], model: str, transport: str = "serve") -> dict:
    done = run_cli(
        [
            "orchestrate",
            "--json",
            "--transport",
            transport,
            "--model",
            f"custom/{model}",
            "--no-fallback",
            "--max-retries",
            "1",
            "--timeout",
            "90",
            "hello",
        ],
        env,
        project,
        timeout=120,
    )
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.opencode
@pytest.mark.parametrize("model", list(FAULTY))
def test_orchestrate_names_the_true_cause(
    project: Path, proxy: Proxy, hermetic_env: dict[str, str], model: str
) -> None:
    write_opencode_config(project, proxy.base_url, api_key_env="CUSTOM_API_KEY", models=[model, "mock-ok"])
    result = _orchestrate(project, _env(hermetic_env, proxy.master_key), model)
    assert result["ok"] is False
    assert result["outcome"]["failure"] == FAULTY[model][1], result["outcome"]
    assert result["outcome"]["message"].startswith("LiteLLM proxy: "), result["outcome"]
    _no_secret(json.dumps(result), proxy)


@pytest.mark.opencode
@pytest.mark.parametrize("transport", ["serve", "run"])
@pytest.mark.parametrize(
    ("key", "model", "failure"),
    [("bad", "mock-ok", "auth"), ("none", "mock-ok", "auth"), ("good", "no-such-model", "model_not_found")],
)
def test_orchestrate_on_keys_and_unknown_models(
    project: Path, proxy: Proxy, hermetic_env: dict[str, str], key: str, model: str, failure: str, transport: str
) -> None:
    """On both transports (on run, `opencode run` starts ahead of the plan: custom/<model> is named outright)."""
    write_opencode_config(project, proxy.base_url, api_key_env="CUSTOM_API_KEY", models=[model])
    env = _env(hermetic_env, {"bad": BAD_KEY, "none": None, "good": proxy.master_key}[key])
    result = _orchestrate(project, env, model, transport)
    outcome = result["outcome"]
    assert outcome["failure"] == failure, outcome
    if key == "none":
        assert outcome["message"].startswith("CUSTOM_API_KEY is not set"), outcome
    else:
        assert outcome["message"].startswith("LiteLLM proxy: "), outcome
    _no_secret(json.dumps(result), proxy)


def test_the_live_tier_uses_the_real_proxy(proxy: Proxy) -> None:
    assert proxy.version != "unknown" and os.path.isdir(os.environ.get("NEXUS_LITELLM_HOME", ""))
