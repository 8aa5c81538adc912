"""The run store wired in: real CLI delegations through real OpenCode and the reference gateway
are recorded, listed, replayed, and change the router's ``observed`` term."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from nexus_core.gateway import ReferenceGateway, write_opencode_config
from nexus_core.opencode.events import FailureClass, Outcome
from nexus_core.routing.score import build_snapshot, profile_task, route
from nexus_core.store.db import default_path
from nexus_core.store.runs import RunStore

KEY = "sk-history-TESTKEY-0123456789abcdef"
SONNET = "custom/claude-sonnet-4-5"
OPUS = "custom/claude-opus-4-5"


@pytest.fixture
def gateway() -> Iterator[ReferenceGateway]:
    with ReferenceGateway(api_key=KEY) as gw:
        yield gw


@pytest.fixture
def project(tmp_path: Path, gateway: ReferenceGateway) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    write_opencode_config(folder, gateway.base_url, api_key_env="CUSTOM_API_KEY", default_model="claude-sonnet-4-5")
    return folder


@pytest.fixture
def env(hermetic_env: dict[str, str]) -> dict[str, str]:
    return {**hermetic_env, "CUSTOM_API_KEY": KEY, "NEXUS_TEST_RUN": uuid.uuid4().hex}


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.opencode
def test_a_cli_delegation_is_listed_and_replayed(gateway: ReferenceGateway, project: Path, env: dict[str, str]) -> None:
    gateway.script("capital of Peru", reply="Lima is the capital.")
    done = run_cli(
        ["orchestrate", "--model", "sonnet", f"What is the capital of Peru? key {KEY}"], env, project, timeout=180
    )
    assert done.returncode == 0, done.stderr
    runs = _json(run_cli(["runs", "--json"], env, project))
    assert len(runs) == 1
    run = runs[0]
    assert (run["status"], run["chosen_model"], run["outcome_class"]) == ("ok", "opencode-custom-sonnet", None)
    assert run["project"] == str(project) and f"runs show {run['id']}" in done.stderr
    shown = run_cli(["runs", "show", run["id"]], env, project)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "Lima is the capital."
    assert "attempt 1: opencode-custom-sonnet via serve" in shown.stderr and "· ok" in shown.stderr
    replay = run_cli(["runs", "show", run["id"], "--events"], env, project)
    assert replay.stdout.strip() == "Lima is the capital." and "step finished (stop)" in replay.stderr
    detail = _json(run_cli(["runs", "show", run["id"], "--json", "--events"], env, project))
    assert detail["routing"]["chosen"] == "opencode-custom-sonnet"
    assert any(t["name"] == "observed" for t in detail["routing"]["models"][0]["terms"])
    [attempt] = detail["attempts"]
    assert attempt["cli_model_name"] == SONNET and attempt["transport"] == "serve"
    assert attempt["session_id"] and attempt["session_id"].startswith("ses")
    assert attempt["tokens_input"] > 0 and attempt["finished_at"] >= attempt["started_at"]
    assert detail["events"][0]["kind"] == "attempt_started"
    assert detail["final_text"] == "Lima is the capital."
    # Another project sees none of it unless it asks for all.
    other = project.parent / "elsewhere"
    other.mkdir()
    assert _json(run_cli(["runs", "--json"], env, other)) == []
    assert [r["id"] for r in _json(run_cli(["runs", "--json", "--all-projects"], env, other))] == [run["id"]]
    # The key reached the gateway's side only: the store's files never hold it.
    files = [p for p in default_path(env).parent.iterdir() if p.name.startswith("runs.sqlite3")]
    assert files
    for path in files:
        assert KEY.encode() not in path.read_bytes()


@pytest.mark.opencode
def test_two_failed_delegations_make_the_observed_term_negative(
    gateway: ReferenceGateway, project: Path, env: dict[str, str]
) -> None:
    gateway.add_fault("500,model=claude-opus-4-5")
    for _ in range(2):
        failed = run_cli(
            ["orchestrate", "--no-fallback", "--max-retries", "0", "--model", "opus", "design a cache"],
            env,
            project,
            timeout=180,
        )
        assert failed.returncode == 1, failed.stderr
    listed = _json(run_cli(["runs", "--json", "--failed", "--model", "opencode-custom-opus"], env, project))
    assert [(r["status"], r["outcome_class"]) for r in listed] == [("failed", "gateway_error")] * 2
    routed = _json(run_cli(["route", "--json", "design a cache"], env, project))
    terms = {m["id"]: {t["name"]: t for t in m["terms"]} for m in routed["models"]}
    opus = terms["opencode-custom-opus"]["observed"]
    assert opus["value"] < 0, opus
    assert "2 of the last 2 attempts failed (gateway_error ×2)" in opus["detail"]
    assert terms["opencode-custom-sonnet"]["observed"]["value"] == 0
    off = _json(run_cli(["route", "--json", "design a cache"], {**env, "NEXUS_NO_HISTORY": "1"}, project))
    assert {t["name"]: t["value"] for t in off["models"][0]["terms"]}["observed"] == 0
    quiet = run_cli(["orchestrate", "--no-history", "--model", "sonnet", "hello"], env, project, timeout=180)
    assert quiet.returncode == 0, quiet.stderr
    assert len(_json(run_cli(["runs", "--json"], env, project))) == 2


_RECORD_AND_HANG = """
import sys, time
from nexus_core.opencode.events import AttemptStarted
from nexus_core.routing.chain import DelegationSpec
from nexus_core.routing.registry import ModelProfile
from nexus_core.store.recorder import DelegationRecorder, history_store
profile = ModelProfile(id="m", name="m", provider="custom", cli_model_name="custom/m", source="opencode.json")
spec = DelegationSpec(prompt="doomed task", chain=(profile,))
store = history_store()
recorder = DelegationRecorder.begin(store, spec, project=sys.argv[1])
recorder.see(AttemptStarted(attempt=1, model_id="m", cli_model_name="custom/m"))
store.flush()
print(recorder.run_id, flush=True)
time.sleep(120)
"""


def test_a_run_killed_with_sigkill_reads_as_interrupted(tmp_path: Path, env: dict[str, str]) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _RECORD_AND_HANG, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        assert run_id, "the recording child printed no run id"
        assert _json(run_cli(["runs", "--json"], env, tmp_path))[0]["status"] == "running"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    listed = _json(run_cli(["runs", "--json"], env, tmp_path))
    assert [(r["id"], r["status"]) for r in listed] == [(run_id, "interrupted")]
    shown = run_cli(["runs", "show", run_id], env, tmp_path)
    assert "interrupted" in shown.stderr and "killed or crashed" in shown.stderr


def test_runs_bad_input_is_one_sentence(tmp_path: Path, env: dict[str, str]) -> None:
    missing = run_cli(["runs", "show", "nope"], env, tmp_path)
    assert missing.returncode == 2 and "no run has the id 'nope'" in missing.stderr
    limit = run_cli(["runs", "--limit", "0"], env, tmp_path)
    assert limit.returncode == 2 and "--limit must be at least 1" in limit.stderr
    empty = run_cli(["runs"], env, tmp_path)
    assert empty.returncode == 0 and "No runs recorded" in empty.stderr
    pruned = _json(run_cli(["runs", "prune", "--json"], env, tmp_path))
    assert pruned["removed"] == 0
    assert "Traceback" not in missing.stderr + limit.stderr + empty.stderr


def test_the_store_rests_a_rate_limited_model_and_penalises_a_failing_one(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write_opencode_config(project, "http://127.0.0.1:9/v1")
    task = profile_task("Design the retry policy for the gateway client and explain the tradeoffs")
    before = route(build_snapshot(project, hermetic_env), task)
    assert before.chosen_or_raise().id == "opencode-custom-opus"
    assert before.chosen_or_raise().term("observed") == ("observed", 0, "no recent attempts")
    assert not default_path(hermetic_env).exists()  # routing never creates the store
    now = time.time()
    with RunStore.open(hermetic_env) as store:
        for model, failure in (("opencode-custom-opus", FailureClass.GATEWAY_ERROR),) * 2 + (
            ("opencode-custom-sonnet", FailureClass.RATE_LIMITED),
        ):
            run = store.begin_run("t", project=project)
            run.attempt_started(1, model_id=model, cli_model_name="custom/x", started_at=now - 30)
            run.attempt_finished(1, Outcome(failure=failure, message="x"), finished_at=now - 10, retry_after_s=120)
            run.finish(None)
    after = route(build_snapshot(project, hermetic_env), task)
    skipped = {s.id: s.reason for s in after.skipped}
    assert re.fullmatch(r"rate limited 1\d s ago; resting 1\d\d s more", skipped["opencode-custom-sonnet"])
    opus = after.chosen_or_raise()
    assert opus.id == "opencode-custom-opus" and opus.total == sum(t.value for t in opus.terms)
    observed = opus.term("observed")
    assert -120 <= observed.value <= -115 and opus.total == before.chosen_or_raise().total + observed.value
    assert observed.detail.startswith("2 of the last 2 attempts failed (gateway_error ×2), last 1")
    forced = route(build_snapshot(project, hermetic_env), task, hint="sonnet")
    assert (
        forced.chosen_or_raise().id == "opencode-custom-sonnet"
        and "forced by the hint" in forced.chosen_or_raise().term("availability").detail
    )
    off = route(build_snapshot(project, {**hermetic_env, "NEXUS_NO_HISTORY": "1"}), task)
    assert off.chosen_or_raise().term("observed").detail.startswith("run history is off") and not off.skipped[1:]
