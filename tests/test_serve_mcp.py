"""The MCP tools on the serve transport: text deltas as progress, permission questions and ``approve``.

The SDK's client over real stdio to ``nexus-agents --mode=server``, the real OpenCode of both
releases (``NEXUS_OPENCODE``), the reference gateway.
"""
# ruff: noqa: F811 - opencode_binary is a fixture imported from opencode_versions

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nexus_core.gateway import write_opencode_config
from nexus_core.gateway.slow import SlowChunkGateway
from opencode_versions import opencode_binary  # noqa: F401 - a fixture
from test_mcp_server import error_text, mcp_client, payload

pytestmark = pytest.mark.opencode

SONNET = "custom/claude-sonnet-4-5"
WORDS = [f"w{i}" for i in range(60)]  # 20 pieces, 4 s: outlasts a cold 1.18.33 holding its first deltas


def _project(tmp_path: Path, gateway: SlowChunkGateway, permission: dict[str, str] | None = None) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    path = write_opencode_config(project, gateway.base_url, default_model="claude-sonnet-4-5")
    config = json.loads(path.read_text())
    config["small_model"] = SONNET
    if permission:
        config["permission"] = permission
    path.write_text(json.dumps(config))
    return project


@pytest.fixture
def env(hermetic_env: dict[str, str], opencode_binary: str) -> dict[str, str]:
    return {**hermetic_env, "NEXUS_OPENCODE": opencode_binary}


async def test_text_deltas_come_as_progress_before_the_answer(tmp_path: Path, env: dict[str, str]) -> None:
    async with SlowChunkGateway(chunk_delay_s=0.2) as gateway:
        gateway.script("stream it", " ".join(WORDS))
        project = _project(tmp_path, gateway)
        notes: list[tuple[float, str]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            notes.append((time.monotonic(), message or ""))

        async with mcp_client(project, env) as client:
            result = await client.call_tool(
                "orchestrate", {"task": "please stream it", "model_hint": "sonnet"}, progress_callback=on_progress
            )
            answered = time.monotonic()
        report = payload(result)
        assert report["ok"] and " ".join(WORDS) in report["text"]
        assert report["tokens"]["total"] > 0
        deltas = [(t, m) for t, m in notes if m.strip().startswith("w")]
        assert len(deltas) >= 5, notes
        assert "".join(m for _, m in deltas).split() == WORDS
        spread = [round(t - deltas[0][0], 2) for t, _ in deltas]
        assert answered - deltas[0][0] > 2.0, (
            f"the text came only with the answer: {spread}, answered {answered - deltas[0][0]:.2f}"
        )


@pytest.mark.parametrize("approve", [None, ["bash"]], ids=["rejected", "approved"])
async def test_a_permission_question_is_rejected_unless_approved(
    tmp_path: Path, env: dict[str, str], approve: list[str] | None
) -> None:
    async with SlowChunkGateway(chunk_delay_s=0.0) as gateway:
        gateway.script(
            "run it",
            tool_calls=[("bash", {"command": "echo hi-from-bash", "description": "say hi"})],
            then="done running",
        )
        project = _project(tmp_path, gateway, permission={"bash": "ask"})
        arguments: dict[str, object] = {"task": "please run it", "model_hint": "sonnet"}
        if approve:
            arguments["approve"] = approve
        async with mcp_client(project, env) as client:
            result = await client.call_tool("orchestrate", arguments)
            if approve:
                report = payload(result)
                assert report["ok"] and report["text"] == "done running"
            else:
                text = error_text(result)
                assert "permission 'bash'" in text and "echo hi-from-bash" in text
                assert 'approve: ["bash"]' in text and "cut" not in text
                delegated = error_text(await client.call_tool("delegate_to_model", {**arguments, "execute": True}))
                assert 'approve: ["bash"]' in delegated
            bad = error_text(await client.call_tool("orchestrate", {**arguments, "approve": ["sudo"]}))
            assert bad.startswith("Invalid arguments for orchestrate: approve") and "'sudo'" in bad
