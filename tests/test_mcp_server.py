"""The MCP server over real stdio: the SDK's client against ``nexus-agents --mode=server``, and OpenCode's."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from nexus_core.setup import server_command
from tests.conftest import opencode_path, run_cli

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@asynccontextmanager
async def mcp_client(project: Path, env: dict[str, str]) -> AsyncIterator[Client]:
    """The SDK client over stdio to this installation's server, started as OpenCode starts it."""
    command = server_command()
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=project)
    async with Client(params, read_timeout_seconds=60) as client:
        yield client


def payload(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def error_text(result: Any) -> str:
    assert result.is_error, result.content
    return result.content[0].text


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


async def test_tools_are_listed_with_schemas(project: Path, hermetic_env: dict[str, str]) -> None:
    async with mcp_client(project, hermetic_env) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"list_experts", "list_models"} <= set(tools)
    assert all(t.description for t in tools.values())


async def test_list_experts_and_models(project: Path, hermetic_env: dict[str, str]) -> None:
    (project / "opencode.json").write_text(json.dumps({"provider": {"acme": {"models": {"big-one": {"name": "Big"}}}}}))
    async with mcp_client(project, hermetic_env) as client:
        experts = payload(await client.call_tool("list_experts", {}))
        models = payload(await client.call_tool("list_models", {}))
    ids = [e["id"] for e in experts["experts"]]
    assert {"code", "review", "security", "architecture", "docs"} <= set(ids)
    assert all(e["system_prompt"] and e["preferred_capability"] for e in experts["experts"])
    assert {"opencode-custom-opus", "opencode-acme-big-one"} <= {m["id"] for m in models["models"]}


async def test_bad_input_is_a_tool_error_and_the_server_keeps_serving(project: Path, hermetic_env: dict[str, str]) -> None:
    async with mcp_client(project, hermetic_env) as client:
        unknown = error_text(await client.call_tool("list_experts", {"modelHint": "x"}))
        assert unknown.startswith("Unknown argument 'modelHint' for list_experts")
        (project / "opencode.json").write_text('{\n  "provider": {,\n}')
        broken = error_text(await client.call_tool("list_models", {}))
        assert str(project / "opencode.json") + ":" in broken and "Fix the file" in broken
        (project / "opencode.json").write_text("{}")
        assert payload(await client.call_tool("list_models", {}))["models"]


@pytest.mark.opencode
def test_opencode_mcp_list_shows_the_server_connected_after_setup(project: Path, hermetic_env: dict[str, str]) -> None:
    setup = run_cli(["setup", "--project"], hermetic_env, project)
    assert setup.returncode == 0, setup.stderr
    listed = subprocess.run([opencode_path(), "mcp", "list"], env=hermetic_env, cwd=project, capture_output=True, text=True, timeout=120)
    text = ANSI.sub("", listed.stdout + listed.stderr)
    assert "✓ nexus-agents connected" in text, text
    assert server_command()[0] in text
