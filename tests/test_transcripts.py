"""Real LiteLLM proxy answers, replayed by the reference gateway: the doctor and orchestrate name the true cause.

The transcripts (tests/transcripts/litellm-*.json) were recorded from litellm[proxy] on
loopback with mock models and a master key (tests/transcripts/record_litellm.py).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import run_cli
from nexus_core.doctor.checks import run_doctor
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.gateway.transcripts import Exchange, Transcript, load_transcript

KEY = "sk-replay-" + secrets.token_hex(12)
BAD_KEY = "sk-replay-wrong-" + secrets.token_hex(6)
HERE = Path(__file__).parent / "transcripts"
FAILING = [p for p in sorted(HERE.glob("litellm-*.json")) if load_transcript(p).expect["cause"] != "ok"]
IDS = [p.stem for p in FAILING]


def chat_exchange(transcript: Transcript) -> Exchange:
    return next(e for e in transcript.exchanges if e.request.path.endswith("/chat/completions"))


def env_for(hermetic_env: dict[str, str], auth: str) -> dict[str, str]:
    env = dict(hermetic_env)
    if auth != "none":
        env["CUSTOM_API_KEY"] = KEY if auth == "good" else BAD_KEY
    return env


@pytest.fixture
async def gateway() -> AsyncIterator[ReferenceGateway]:
    async with ReferenceGateway(api_key=KEY) as gw:
        yield gw


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    return directory


def assert_no_key(text: str) -> None:
    assert KEY not in text and BAD_KEY not in text and KEY[10:] not in text


def _without_opencode(env: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "opencode").exists())
    return {**env, "PATH": path}


async def test_replay_answers_as_recorded(gateway: ReferenceGateway) -> None:
    import httpx

    transcript = load_transcript(HERE / "litellm-ok.json")
    gateway.replay(transcript)
    async with httpx.AsyncClient() as client:
        models = await client.get(gateway.base_url + "/models", headers={"Authorization": f"Bearer {KEY}"})
        chat = await client.post(gateway.base_url + "/chat/completions", json={"model": "mock-ok", "messages": []})
    assert models.json()["data"][0]["id"] == "mock-ok"
    assert chat.headers["x-litellm-version"] and chat.headers["content-type"].startswith("text/event-stream")
    assert chat.text == chat_exchange(transcript).response.body and chat.text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("path", FAILING, ids=IDS)
async def test_doctor_names_the_true_cause(
    path: Path, gateway: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    transcript = load_transcript(path)
    chat = chat_exchange(transcript)
    gateway.replay(transcript)
    write_opencode_config(project, gateway.base_url, api_key_env="CUSTOM_API_KEY", models=[chat.request.model])
    report = await run_doctor(project, _without_opencode(env_for(hermetic_env, chat.request.auth)), probe=True)
    expect = transcript.expect
    assert not report.ok
    assert_no_key(report.model_dump_json())
    key = report.check("provider.custom.api_key")
    gw = report.check("gateway.custom")
    if expect["cause"] == "auth_rejected":
        assert (key.status, key.cause) == ("fail", "key_rejected"), key
        assert gw.cause == "unauthorized" and gw.summary.startswith("LiteLLM proxy: "), gw
        assert "baseURL" not in gw.fix and "master key" in gw.fix
    elif expect["cause"] == "auth_missing":
        assert (key.status, key.cause) == ("fail", "key_unset"), key
        # The known cause first, then what the gateway said: nothing blames the gateway.
        assert gw.cause == "unauthorized" and gw.summary.startswith("CUSTOM_API_KEY is not set"), gw
        assert "no key is sent" in gw.summary and gw.fix.startswith("export CUSTOM_API_KEY=")
    elif expect["cause"] == "model_not_found":
        models = report.check("models.custom")
        assert models.status == "fail" and models.cause == "model_not_served", models
        assert "no-such-model" in models.summary
    else:
        assert gw.status == "ok" and key.status == "ok"
        probe = report.check("probe.chat.custom")
        assert probe.status == "fail" and probe.cause == expect["probe_cause"], probe
        assert probe.summary.startswith("LiteLLM proxy: "), probe
        assert probe.data["gateway"] == "LiteLLM proxy"


def _orchestrate(project: Path, env: dict[str, str], model: str) -> tuple[dict, str]:
    done = run_cli(
        [
            "orchestrate",
            "--json",
            # The transcripts' causes are read from `opencode run`'s error events; on serve the same answers
            # reach nexus as session.status retries and session.error (not yet read by meaning, see issue notes).
            "--transport",
            "run",
            "--model",
            f"custom/{model}",
            "--no-fallback",
            "--max-retries",
            "1",
            "--timeout",
            "60",
            "--dir",
            str(project),
            "hello",
        ],
        env,
        project,
        timeout=90,
    )
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stdout + done.stderr


@pytest.mark.opencode
@pytest.mark.parametrize("path", FAILING, ids=IDS)
def test_orchestrate_names_the_true_cause(path: Path, project: Path, hermetic_env: dict[str, str]) -> None:
    transcript = load_transcript(path)
    chat = chat_exchange(transcript)
    with ReferenceGateway(api_key=KEY) as gateway:
        gateway.replay(transcript)
        model = chat.request.model
        assert model is not None, "the transcript's request names no model"
        write_opencode_config(project, gateway.base_url, api_key_env="CUSTOM_API_KEY", models=[model])
        result, text = _orchestrate(project, env_for(hermetic_env, chat.request.auth), model)
    expect = transcript.expect
    outcome = result["outcome"]
    assert result["ok"] is False
    assert outcome["failure"] == expect["failure"], outcome
    assert_no_key(text)
    if expect["cause"] == "auth_missing":
        # Known before running: said first, and without OpenCode's retry loop.
        assert outcome["message"].startswith("CUSTOM_API_KEY is not set"), outcome
        assert outcome["fix"].startswith("export CUSTOM_API_KEY="), outcome
        assert len(result["attempts"]) == 1 and outcome["duration_s"] < 15
    else:
        assert outcome["message"].startswith("LiteLLM proxy: "), outcome
    if expect["cause"] in ("auth_rejected", "auth_missing"):
        assert "model's limits" not in outcome["fix"] and "baseURL" not in outcome["fix"], outcome


async def test_a_key_opencode_will_not_send_is_said_first(
    gateway: ReferenceGateway, project: Path, hermetic_env: dict[str, str]
) -> None:
    """CUSTOM_API_KEY is exported but opencode.json never names it: OpenCode sends no key."""
    write_opencode_config(project, gateway.base_url)
    report = await run_doctor(project, _without_opencode({**hermetic_env, "CUSTOM_API_KEY": KEY}))
    gw = report.check("gateway.custom")
    assert gw.status == "fail" and gw.summary.startswith("CUSTOM_API_KEY is set, but provider custom"), gw
    assert gw.fix == 'set provider.custom.options.apiKey to "{env:CUSTOM_API_KEY}" in opencode.json'
    assert_no_key(report.model_dump_json())
