"""One delegation planner: the CLI and the MCP tools turn a task and a hint into the same chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from nexus_core.cli.orchestrate import choose_chain
from nexus_core.errors import NexusError
from nexus_core.mcp.project import Project, decide
from nexus_core.mcp.reports import plan_view, recommendation
from nexus_core.routing.planner import plan_delegation
from nexus_core.routing.score import build_snapshot

CONFIG = {
    "provider": {
        "custom": {
            "npm": "@ai-sdk/openai-compatible",
            "options": {"baseURL": "http://127.0.0.1:9/v1", "apiKey": "{env:CUSTOM_API_KEY}"},
            "models": {
                "claude-opus-4-5": {"name": "Claude Opus 4.5", "limit": {"context": 200000, "output": 65536}},
                "claude-sonnet-4-5": {"name": "Claude Sonnet 4.5", "limit": {"context": 200000, "output": 65536}},
            },
        }
    },
}
TASK = "Design the architecture of a concurrent job scheduler and analyze the deadlock tradeoffs."


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "opencode.json").write_text(json.dumps(CONFIG))
    return folder


@pytest.mark.parametrize("hint", [None, "sonnet", "custom/claude-sonnet-4-5", "custom/not-in-the-registry"])
def test_cli_and_mcp_plan_the_same_chain(project: Path, hermetic_env: dict[str, str], hint: str | None) -> None:
    snapshot = build_snapshot(project, hermetic_env)
    cli_chain, cli_why = choose_chain(snapshot, TASK, hint)
    _, plan = decide(Project(project, hermetic_env), TASK, hint, None, None)
    assert [m.cli_model_name for m in plan.chain] == [m.cli_model_name for m in cli_chain]
    assert plan.why == cli_why
    assert plan_view(plan, TASK)["chain_cli_model_names"] == [m.cli_model_name for m in cli_chain]


def test_a_hint_goes_first_and_routing_chooses_without_one(project: Path, hermetic_env: dict[str, str]) -> None:
    snapshot = build_snapshot(project, hermetic_env)
    routed = plan_delegation(snapshot, TASK)
    assert routed.first.id == "opencode-custom-opus" and routed.why.startswith("routed: ")
    assert routed.decision is not None and routed.decision.chosen_or_raise().id == routed.first.id
    hinted = plan_delegation(snapshot, TASK, "sonnet")
    assert hinted.first.id == "opencode-custom-sonnet" and hinted.why == "asked for 'sonnet'"
    assert len(plan_delegation(snapshot, TASK, "sonnet", fallback=False).chain) == 1


def test_an_unknown_provider_model_is_tried_alone_by_both(project: Path, hermetic_env: dict[str, str]) -> None:
    snapshot = build_snapshot(project, hermetic_env)
    plan = plan_delegation(snapshot, TASK, " custom/not-in-the-registry ")
    assert [m.cli_model_name for m in plan.chain] == ["custom/not-in-the-registry"] and plan.decision is None
    assert "no fallbacks" in plan.why
    # The MCP tools took this hint for an error before; now they plan it as the CLI does.
    _, mcp_plan = decide(Project(project, hermetic_env), TASK, "custom/not-in-the-registry", None, None)
    advice = recommendation(mcp_plan, None)
    assert (advice.recommended, advice.fallback_chain, advice.breakdown) == (
        "custom/not-in-the-registry",
        ["custom/not-in-the-registry"],
        [],
    )
    assert plan_view(mcp_plan, TASK)["chosen_cli_model_name"] == "custom/not-in-the-registry"


def test_a_hint_that_names_nothing_is_one_sentence_everywhere(project: Path, hermetic_env: dict[str, str]) -> None:
    snapshot = build_snapshot(project, hermetic_env)
    with pytest.raises(NexusError, match="no model matches the hint 'sonet'"):
        plan_delegation(snapshot, TASK, "sonet")
    with pytest.raises(ToolError, match="no model matches the hint 'sonet'"):
        decide(Project(project, hermetic_env), TASK, "sonet", None, None)
