"""``doctor --probe`` probes every declared model and the small_model, each with its own verdict."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import run_cli
from nexus_core.doctor.checks import TESTED_OPENCODE, DoctorReport, run_doctor
from nexus_core.doctor.probes import PROBE_CONCURRENCY
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.routing.score import build_snapshot, profile_task, route

KEY = "sk-probe-" + secrets.token_hex(12)
OPUS, SONNET = "claude-opus-4-5", "claude-sonnet-4-5"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    return directory


@pytest.fixture
def env(hermetic_env: dict[str, str]) -> dict[str, str]:
    return {**hermetic_env, "CUSTOM_API_KEY": KEY}


@pytest.fixture
async def gateway() -> AsyncIterator[ReferenceGateway]:
    async with ReferenceGateway(api_key=KEY) as gw:
        yield gw


def without_opencode(env: dict[str, str]) -> dict[str, str]:
    """``env`` with no OpenCode to be found, so ``--probe`` runs the chat probes and no ``opencode run`` smoke.

    Off PATH is not enough: the locator's last resort is the checkout's .tools, so NEXUS_OPENCODE
    names nothing too; else every probe test would also run OpenCode (its version and a smoke).
    """
    path = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "opencode").exists())
    return {**env, "PATH": path, "NEXUS_OPENCODE": str(Path(env["HOME"]) / "no-opencode")}


def with_standin_opencode(env: dict[str, str], directory: Path) -> dict[str, str]:
    """``env`` with an ``opencode`` first on PATH that answers ``--version`` as the pinned release, at once.

    For a test whose verdicts come before any OpenCode run (the doctor still runs ``opencode --version``,
    over a second of CPU with the real binary); anything but ``--version`` fails loudly.
    """
    directory.mkdir(exist_ok=True)
    exe = directory / "opencode"
    exe.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo {TESTED_OPENCODE}; exit 0; fi\n'
        'echo "stand-in opencode (tests/test_probe_models.py) only answers --version" >&2\n'
        "exit 2\n"
    )
    exe.chmod(0o755)
    return {**env, "PATH": f"{directory}{os.pathsep}{env['PATH']}"}


def chat_checks(report: DoctorReport) -> dict[str, str]:
    return {c.id: c.status for c in report.checks if c.id.startswith("probe.chat.")}


async def test_every_declared_model_gets_its_own_verdict(
    project: Path, env: dict[str, str], gateway: ReferenceGateway
) -> None:
    gateway.add_fault(f"status=429,model={OPUS}")
    write_opencode_config(project, gateway.base_url, api_key_env="CUSTOM_API_KEY", default_model=SONNET)
    report = await run_doctor(project, without_opencode(env), probe=True)
    assert chat_checks(report) == {
        "probe.chat.custom": "fail",
        f"probe.chat.custom.{OPUS}": "fail",
        f"probe.chat.custom.{SONNET}": "ok",
    }
    opus = report.check(f"probe.chat.custom.{OPUS}")
    assert opus.cause == "rate_limited" and "Retry-After: 1" in opus.summary and opus.data["timings"]["total_ms"]
    sonnet = report.check(f"probe.chat.custom.{SONNET}")
    assert sonnet.data["roles"] == ["model", "small_model"] and "(model, small_model)" in sonnet.title
    summary = report.check("probe.chat.custom")
    assert summary.summary.startswith("1 of 2 model(s) fail") and f"custom/{OPUS}" in summary.summary
    assert report.check("gateway.custom").status == "ok"  # one model's failure does not condemn the gateway
    assert {r.model for r in gateway.requests if r.kind == "chat"} == {OPUS, SONNET}


async def test_an_undeclared_small_model_is_probed_too(
    project: Path, env: dict[str, str], gateway: ReferenceGateway
) -> None:
    write_opencode_config(
        project, gateway.base_url, api_key_env="CUSTOM_API_KEY", models=[SONNET], small_model="claude-haiku-9"
    )
    report = await run_doctor(project, without_opencode(env), probe=True)
    small = report.check("probe.chat.custom.claude-haiku-9")
    assert small is not None and small.status == "fail", small
    assert small.cause == "model_not_served" and small.data["roles"] == ["small_model"]
    assert report.check(f"probe.chat.custom.{SONNET}").status == "ok"


async def test_probes_run_concurrently_and_bounded(project: Path, env: dict[str, str]) -> None:
    models = [f"model-{i}" for i in range(2 * PROBE_CONCURRENCY)]
    async with ReferenceGateway(api_key=KEY, models=models) as gw:
        gw.add_fault("latency=1,path=/chat/completions")
        write_opencode_config(project, gw.base_url, api_key_env="CUSTOM_API_KEY", models=models)
        report = await run_doctor(project, without_opencode(env), probe=True)
        chats = [r for r in gw.requests if r.kind == "chat"]
    assert all(report.check(f"probe.chat.custom.{m}").status == "ok" for m in models)
    assert {r.model for r in chats} == set(models)
    arrivals = sorted(r.at for r in chats)
    # Counted at the gateway, not by the wall clock (a loaded machine stretches that): while the
    # first probe is still held for its second, several others have arrived, never more than the bound.
    first_wave = [at for at in arrivals if at < arrivals[0] + 0.8]
    assert 2 <= len(first_wave) <= PROBE_CONCURRENCY, arrivals


async def test_dead_gateway_verdict_within_bound_with_probe(project: Path, env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write_opencode_config(project, f"http://127.0.0.1:{port}/v1", api_key_env="CUSTOM_API_KEY")
    standin = with_standin_opencode(env, tmp_path / "standin-bin")
    began = time.perf_counter()
    report = await run_doctor(project, standin, probe=True)
    assert time.perf_counter() - began < 3.5
    assert report.check("gateway.custom").cause == "connection_refused"
    assert report.check("probe.chat.custom").status == "skipped"
    assert report.check("probe.opencode_run").status == "skipped"


@pytest.mark.opencode
async def test_the_smoke_uses_a_model_that_passed(
    project: Path, env: dict[str, str], gateway: ReferenceGateway
) -> None:
    gateway.add_fault(f"status=429,model={OPUS}")
    write_opencode_config(
        project, gateway.base_url, api_key_env="CUSTOM_API_KEY", default_model=OPUS, small_model=SONNET
    )
    report = await run_doctor(project, env, probe=True, smoke_timeout=45)
    smoke = report.check("probe.opencode_run")
    assert smoke.status == "ok" and smoke.data["model"] == f"custom/{SONNET}", smoke
    assert report.check(f"probe.chat.custom.{OPUS}").cause == "rate_limited"
    assert not report.ok


async def test_route_and_doctor_give_the_same_fix(project: Path, env: dict[str, str]) -> None:
    """opencode.json declares claude-opus-4-6 (the gateway serves it); the registry's opus still says 4-5."""
    served = ["claude-opus-4-6", "claude-sonnet-4-5"]
    async with ReferenceGateway(api_key=KEY, models=served) as gw:
        write_opencode_config(project, gw.base_url, api_key_env="CUSTOM_API_KEY", models=served)
        report = await run_doctor(project, without_opencode(env))
    doctor_fix = report.check("models.custom").fix
    snapshot = build_snapshot(project, env).with_gateway_models("custom", served)
    reasons = {s.id: s.reason for s in route(snapshot, profile_task("fix the bug")).skipped}
    fix = f"set cli_model_name of opencode-custom-opus to custom/claude-opus-4-6 in {project}/.nexus/models.json"
    assert fix in doctor_fix and fix in reasons["opencode-custom-opus"]
    assert "rename the key" not in reasons["opencode-custom-opus"] and "rename the key" not in doctor_fix


def test_models_warns_with_the_same_words(project: Path, env: dict[str, str]) -> None:
    write_opencode_config(project, "http://127.0.0.1:9/v1", api_key_env="CUSTOM_API_KEY", models=["claude-opus-4-6"])
    done = run_cli(["models"], env, project)
    assert done.returncode == 0, done.stderr
    assert (
        "warning: opencode-custom-opus uses custom/claude-opus-4-5; opencode.json declares claude-opus-4-6: "
        f"set cli_model_name of opencode-custom-opus to custom/claude-opus-4-6 in {project}/.nexus/models.json"
    ) in done.stderr
    shown = json.loads(run_cli(["models", "--json"], env, project).stdout)
    assert any(m["model"] == "opencode-custom-opus" for m in shown["mismatches"])
