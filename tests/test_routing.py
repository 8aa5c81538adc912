"""Routing: task profiles, score terms that add up, availability with reasons, hints, fallback chains, `route`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from nexus_core.errors import NexusError
from nexus_core.routing.score import WEIGHTS, build_snapshot, fallback_chain, profile_task, route
from nexus_core.routing.weights import TERM_NAMES

GATEWAY = {
    "$schema": "https://opencode.ai/config.json",
    "provider": {
        "custom": {
            "npm": "@ai-sdk/openai-compatible",
            "options": {"baseURL": "http://127.0.0.1:9/v1", "apiKey": "{env:CUSTOM_API_KEY}"},
            "models": {
                "claude-opus-4-5": {"name": "Claude Opus 4.5", "limit": {"context": 200000, "output": 65536}},
                "claude-sonnet-4-5": {"name": "Claude Sonnet 4.5", "limit": {"context": 200000, "output": 65536}},
                "acme-haiku": {"name": "Acme Haiku", "limit": {"context": 16000, "output": 4096}},
            },
        }
    },
}

REASONING_TASK = "Design the architecture of a concurrent job scheduler and analyze the deadlock tradeoffs."
TYPO_TASK = "fix a typo in the README"


def _project(tmp_path: Path, config: dict | None = None) -> Path:
    project = tmp_path / "proj"
    project.mkdir(exist_ok=True)
    (project / "opencode.json").write_text(json.dumps(GATEWAY if config is None else config, indent=2))
    return project


def _without_opencode(env: dict[str, str]) -> dict[str, str]:
    """No `opencode` anywhere: none on PATH, and NEXUS_OPENCODE naming nothing (so the checkout's .tools is not used)."""
    dirs = [d for d in env["PATH"].split(os.pathsep) if d and not shutil.which("opencode", path=d)]
    return {**env, "PATH": os.pathsep.join(dirs), "NEXUS_OPENCODE": os.path.join(env["HOME"], "no-such-opencode")}


def _route_json(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, dict]:
    result = run_cli(["route", "--json", *args], env, cwd)
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


# ---------------------------------------------------------------- task profile


def test_profile_is_deterministic_and_reads_keywords_size_and_tokens() -> None:
    first = profile_task(REASONING_TASK)
    assert first == profile_task(REASONING_TASK)
    assert first.token_estimate == -(-len(REASONING_TASK) // WEIGHTS.chars_per_token)
    assert {"architect*", "design*", "concurren*", "analy*", "deadlock*", "tradeoff*"} <= set(
        first.keywords["reasoning"]
    )
    assert first.size == "small"
    assert first.weights["reasoning"] > first.weights["code"] > first.weights["speed"]
    assert sum(first.weights.values()) == pytest.approx(1.0)
    huge = profile_task("refactor " * 30_000)
    assert huge.size == "huge"
    assert huge.context_tokens == huge.token_estimate + WEIGHTS.opencode_overhead_tokens + huge.output_tokens
    assert huge.emphasis["reasoning"] == WEIGHTS.base_emphasis.reasoning + WEIGHTS.large_task_reasoning_emphasis


def test_explicit_preferences_replace_the_derived_emphasis() -> None:
    profile = profile_task(REASONING_TASK, reasoning=0, speed=10, context=500_000)
    assert profile.emphasis["reasoning"] == 0 and profile.emphasis["speed"] == 10
    assert profile.context_tokens == 500_000
    assert profile.explicit == ("reasoning", "speed", "context")
    with pytest.raises(NexusError, match="from 0 to 10"):
        profile_task("x", code=11)
    with pytest.raises(NexusError, match="positive number of tokens"):
        profile_task("x", context=0)


# ---------------------------------------------------------------- scoring


def test_terms_sum_to_the_total_and_ranking_is_deterministic(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    config = json.loads(json.dumps(GATEWAY))
    # Twenty identical models force the tie-break to decide the order.
    config["provider"]["custom"]["models"].update({f"twin-{i:02d}": {"name": f"Twin {i}"} for i in range(20)})
    project = _project(tmp_path, config)
    code, first = _route_json([REASONING_TASK], hermetic_env, project)
    assert code == 0
    assert len(first["models"]) == 23
    for model in first["models"]:
        assert [t["name"] for t in model["terms"]] == list(TERM_NAMES)
        assert sum(t["value"] for t in model["terms"]) == model["total"]
        assert all(isinstance(t["value"], int) and t["detail"] for t in model["terms"])
    totals = [(-m["total"], m["id"]) for m in first["models"]]
    assert totals == sorted(totals)
    twins = [m["id"] for m in first["models"] if m["id"].startswith("opencode-custom-twin")]
    assert twins == sorted(twins)
    _, again = _route_json([REASONING_TASK], hermetic_env, project)
    assert again == first


def test_reasoning_goes_to_opus_and_a_typo_to_sonnet(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    snapshot = build_snapshot(_project(tmp_path), hermetic_env)
    assert route(snapshot, profile_task(REASONING_TASK)).chosen_or_raise().id == "opencode-custom-opus"
    assert route(snapshot, profile_task(TYPO_TASK)).chosen_or_raise().id == "opencode-custom-sonnet"


def test_a_model_whose_context_is_too_small_ranks_last(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    snapshot = build_snapshot(_project(tmp_path), hermetic_env)
    decision = route(snapshot, profile_task("speed matters: quick cheap summary " * 2000))
    haiku = next(s for s in decision.ranked if s.id == "opencode-custom-acme-haiku")
    assert haiku.term("context").value == WEIGHTS.context_too_small_points
    assert "too small" in haiku.term("context").detail
    assert decision.ranked[-1].id == haiku.id


# ---------------------------------------------------------------- availability


def test_without_opencode_on_path_no_model_is_chosen_and_the_output_says_why(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    project = _project(tmp_path)
    env = _without_opencode(hermetic_env)
    code, shown = _route_json([TYPO_TASK], env, project)
    assert code == 1
    assert shown["chosen"] is None and shown["models"] == [] and shown["chain"] == []
    assert "OpenCode was not found" in shown["reason"]
    assert {s["id"] for s in shown["skipped"]} >= {"opencode-custom-opus", "opencode-custom-sonnet", "opencode-default"}
    assert all("OpenCode was not found" in s["reason"] for s in shown["skipped"])
    text = run_cli(["route", "--explain", TYPO_TASK], env, project)
    assert text.returncode == 1
    assert "No model chosen" in text.stdout and "OpenCode was not found" in text.stdout
    assert "opencode-custom-opus: OpenCode was not found" in text.stdout


def test_models_missing_from_config_or_gateway_are_skipped_with_reasons(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    config = json.loads(json.dumps(GATEWAY))
    del config["provider"]["custom"]["models"]["claude-sonnet-4-5"]
    snapshot = build_snapshot(_project(tmp_path, config), hermetic_env)
    assert snapshot.opencode_path is not None
    reasons = {s.id: s.reason for s in route(snapshot, profile_task(TYPO_TASK)).skipped}
    # Worded as the doctor words it (routing/crosscheck.py): what disagrees, then the one fix.
    assert (
        "uses custom/claude-sonnet-4-5; opencode.json does not declare claude-sonnet-4-5"
        in reasons["opencode-custom-sonnet"]
    )
    assert "declare claude-sonnet-4-5 under provider.custom.models" in reasons["opencode-custom-sonnet"]
    assert "names no default model" in reasons["opencode-default"]

    listed = snapshot.with_gateway_models("custom", ["claude-opus-4-5"])
    decision = route(listed, profile_task(TYPO_TASK))
    reasons = {s.id: s.reason for s in decision.skipped}
    assert "the gateway does not serve acme-haiku" in reasons["opencode-custom-acme-haiku"]
    assert [s.id for s in decision.ranked] == ["opencode-custom-opus"]
    assert decision.ranked[0].term("availability").value == WEIGHTS.gateway_listed_points


def test_the_default_model_is_routable_once_the_config_names_one(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    config = {**GATEWAY, "model": "custom/acme-haiku"}
    snapshot = build_snapshot(_project(tmp_path, config), hermetic_env)
    decision = route(snapshot, profile_task(TYPO_TASK))
    assert "opencode-default" in {s.id for s in decision.ranked}
    assert [m.id for m in fallback_chain(snapshot, "opencode-custom-opus")] == [
        "opencode-custom-opus",
        "opencode-custom-sonnet",
        "opencode-default",
    ]


def test_a_rate_limited_model_cools_down_on_the_injected_clock(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    now = [1000.0]
    snapshot = build_snapshot(_project(tmp_path), hermetic_env, clock=lambda: now[0])
    cooled = snapshot.with_cooldown("opencode-custom-sonnet", 60)
    decision = route(cooled, profile_task(TYPO_TASK))
    assert "opencode-custom-sonnet" not in {s.id for s in decision.ranked}
    assert "cooling down for 60 s more" in {s.id: s.reason for s in decision.skipped}["opencode-custom-sonnet"]
    assert [m.id for m in fallback_chain(cooled, "opencode-custom-opus")] == ["opencode-custom-opus"]
    forced = route(cooled, profile_task(TYPO_TASK), hint="sonnet")
    assert forced.chosen_or_raise().id == "opencode-custom-sonnet"
    assert "forced by the hint" in forced.chosen_or_raise().term("availability").detail
    now[0] += 61
    assert route(cooled, profile_task(TYPO_TASK)).chosen_or_raise().id == "opencode-custom-sonnet"
    assert snapshot.cooldowns == {}  # the original value never changes


# ---------------------------------------------------------------- hints


@pytest.mark.parametrize("hint", ["opencode-custom-opus", "OPUS", "custom/claude-opus-4-5"])
def test_a_hint_by_id_alias_or_cli_name_forces_the_model(
    tmp_path: Path, hermetic_env: dict[str, str], hint: str
) -> None:
    snapshot = build_snapshot(_project(tmp_path), hermetic_env)
    decision = route(snapshot, profile_task(TYPO_TASK), hint=hint)
    assert decision.chosen_or_raise().id == "opencode-custom-opus"
    assert decision.ranked[0].id == "opencode-custom-opus"
    assert decision.chosen_or_raise().term("hint").value == WEIGHTS.hint_points
    assert all(s.term("hint").value == 0 for s in decision.ranked[1:])
    assert [m.id for m in decision.chain] == ["opencode-custom-opus", "opencode-custom-sonnet"]


def test_an_unknown_hint_lists_the_closest_matches(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = _project(tmp_path)
    with pytest.raises(NexusError, match=r"closest: .*opus"):
        route(build_snapshot(project, hermetic_env), profile_task("x"), hint="opuss")
    result = run_cli(["route", "--model", "custom/claude-opus-4", "x"], hermetic_env, project)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no model matches the hint" in lines[0] and "custom/claude-opus-4-5" in lines[0]


def test_a_hint_naming_an_unavailable_model_says_why(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    code, shown = _route_json(["--model", "default", "x"], hermetic_env, _project(tmp_path))
    assert code == 1 and shown["chosen"] is None
    assert "the hinted model opencode-default is unavailable" in shown["reason"]


# ---------------------------------------------------------------- CLI


def test_route_explain_shows_the_breakdown_for_the_top_n_and_the_skipped(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    result = run_cli(["route", "--explain", "--top", "2", REASONING_TASK], hermetic_env, _project(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Chosen: opencode-custom-opus (custom/claude-opus-4-5)" in out
    assert "Fallback chain: opencode-custom-opus → opencode-custom-sonnet" in out
    assert "top 2 of 3" in out
    assert all(name in out for name in TERM_NAMES)
    assert "opencode-custom-acme-haiku" not in out.split("Skipped:")[0]
    assert "opencode-default: the OpenCode config names no default model" in out


def test_route_reads_the_task_from_stdin_and_rejects_an_empty_one(tmp_path: Path, hermetic_env: dict[str, str]) -> None:
    project = _project(tmp_path)
    result = run_cli(["route", "--json", "-"], hermetic_env, project, stdin="--model is text here: " + REASONING_TASK)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chosen"] == "opencode-custom-opus"
    empty = run_cli(["route", "   "], hermetic_env, project)
    assert empty.returncode == 2 and "the task is empty" in empty.stderr and "Traceback" not in empty.stderr


def test_fallback_chains_follow_overlay_ids_and_skip_unknown_repeated_and_unavailable(
    tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    project = _project(tmp_path)
    overlay = project / ".nexus" / "models.json"
    overlay.parent.mkdir()
    overlay.write_text(
        json.dumps(
            {
                "models": {
                    "opencode-custom-acme-haiku": {
                        "fallback": ["no-such-model", "opencode-custom-opus", "opencode-custom-acme-haiku"]
                    },
                }
            }
        )
    )
    snapshot = build_snapshot(project, hermetic_env)
    chain = [m.id for m in fallback_chain(snapshot, "opencode-custom-acme-haiku")]
    # opus, then opus's own fallbacks; the default is skipped (no default model), the cycle is cut.
    assert chain == ["opencode-custom-acme-haiku", "opencode-custom-opus", "opencode-custom-sonnet"]
    with pytest.raises(NexusError, match="no model has the id"):
        fallback_chain(snapshot, "nope")
