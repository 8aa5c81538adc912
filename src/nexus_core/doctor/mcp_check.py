"""The doctor's ``mcp`` check: the ``nexus-agents`` MCP entry in the OpenCode config."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

from nexus_core.config.loader import MergedConfig
from nexus_core.doctor.report import Check
from nexus_core.opencode.events import as_object

__all__ = ["MCP_ENTRY", "check_mcp"]

MCP_ENTRY = "nexus-agents"


def check_mcp(config: MergedConfig, env: Mapping[str, str]) -> Check:
    title = "nexus-agents MCP entry"
    servers = as_object(config.data.get("mcp"))
    entry = servers.get(MCP_ENTRY)
    if not isinstance(entry, dict):
        return Check(
            id="mcp",
            title=title,
            status="warn",
            cause="mcp_entry_missing",
            summary="no mcp.nexus-agents entry: OpenCode sessions cannot call nexus tools",
            fix="run `nexus-agents setup --project` (optional: only for using nexus tools from inside OpenCode)",
        )
    source = config.origin("mcp", MCP_ENTRY)
    if entry.get("enabled") is False:
        return Check(
            id="mcp",
            title=title,
            status="warn",
            cause="mcp_entry_disabled",
            summary=f"mcp.nexus-agents is disabled in {source}",
            fix=f'set "enabled": true in {source}',
        )
    command = entry.get("command")
    if entry.get("type", "local") == "local":
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            return Check(
                id="mcp",
                title=title,
                status="warn",
                cause="mcp_entry_invalid",
                summary=f"mcp.nexus-agents in {source} has no command list",
                fix="run `nexus-agents setup --project --force`",
            )
        exe = command[0]
        found = exe if os.path.isabs(exe) and os.access(exe, os.X_OK) else shutil.which(exe, path=env.get("PATH"))
        if not found:
            return Check(
                id="mcp",
                title=title,
                status="warn",
                cause="mcp_command_missing",
                summary=f"mcp.nexus-agents runs {exe!r}, which is not found",
                detail=f"command: {command}",
                fix="run `nexus-agents setup --project --force` to point it at this installation",
            )
        return Check(
            id="mcp",
            title=title,
            status="ok",
            summary=f"present in {source}: {' '.join(command)}",
            data={"source": source},
        )
    return Check(
        id="mcp",
        title=title,
        status="ok",
        summary=f"present in {source} ({entry.get('type')})",
        data={"source": source},
    )
