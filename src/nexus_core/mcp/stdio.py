"""The MCP server's stdio life: serving until the client goes, and going quietly when it is gone.

A client killed with SIGKILL closes both pipes at once. Answers still on their way then fail with
``BrokenPipeError`` inside the SDK's task group, which ends it with an ``ExceptionGroup``; that is
the client's exit, not a server fault, so the server ends with status 0 and says nothing (and
stdout is pointed at the null device, so that Python's own flush at exit cannot complain either).

The SDK drops a line it cannot read as a JSON-RPC message without an answer, so a client that sent
a request with the wrong shape (``params`` an array) or nested too deep for the SDK's parser (which
stops at a few hundred levels) would wait for ever. Each line is checked first; a request that would be
dropped gets a JSON-RPC error with its id (``-32600`` invalid request, ``-32700`` for a line that
is not JSON at all, or too deep to read), through the SDK's own writer so frames never tear.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from io import TextIOWrapper
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

__all__ = ["CheckedStdin", "client_gone", "invalid_reply", "run_stdio"]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
# Where a request's id is looked for when the line cannot be parsed (too deep): near its start.
_ID_NEAR_START = re.compile(r'^\s*\{[^\[{]*?"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')

_GONE = (BrokenPipeError, ConnectionResetError, anyio.BrokenResourceError, anyio.ClosedResourceError)


def client_gone(error: BaseException) -> bool:
    """Whether ``error`` (an exception group included) only says that the client's pipes are closed."""
    if isinstance(error, BaseExceptionGroup):
        return all(client_gone(inner) for inner in error.exceptions)
    return isinstance(error, _GONE)


def _request_id(line: str) -> tuple[bool, Any]:
    """Whether ``line`` is a request (it has an id and a method), and its id; ids of other shapes are None."""
    try:
        data = json.loads(line)
    except RecursionError:
        found = _ID_NEAR_START.match(line[:4096])
        return (found is not None, json.loads(found.group(1)) if found else None)
    except ValueError:
        return (False, None)
    if not isinstance(data, dict) or "method" not in data or "id" not in data:
        return (False, None)
    ident = data["id"]
    return (True, ident if isinstance(ident, (int, str)) and not isinstance(ident, bool) else None)


def invalid_reply(line: str) -> types.JSONRPCError | None:
    """The JSON-RPC error for a line the SDK cannot read, or None when none is owed (a notification, a reply)."""
    try:
        json.loads(line)
    except RecursionError:
        request, ident = _request_id(line)
        message = "the message is nested too deeply for the server to read; send it flatter"
        return types.JSONRPCError(
            jsonrpc="2.0",
            id=ident,
            error=types.ErrorData(code=INVALID_REQUEST if request else PARSE_ERROR, message=message),
        )
    except ValueError:
        message = "the line is not JSON; send one JSON-RPC message per line"
        return types.JSONRPCError(jsonrpc="2.0", id=None, error=types.ErrorData(code=PARSE_ERROR, message=message))
    request, ident = _request_id(line)
    if not request:
        return None
    message = 'not a valid JSON-RPC request: params must be an object, method a string, jsonrpc "2.0"'
    return types.JSONRPCError(jsonrpc="2.0", id=ident, error=types.ErrorData(code=INVALID_REQUEST, message=message))


class CheckedStdin:
    """The client's lines for the SDK; one the SDK would drop unanswered is answered here instead."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.replies: Any = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        async for line in self._source:
            try:
                types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            except ValueError:
                reply = invalid_reply(line)
                if reply is not None and self.replies is not None:
                    await self.replies.send(SessionMessage(reply))
                    continue
            yield line


def _private_stdin() -> Any:
    """The wire on a private descriptor, and fd 0 on the null device (what the SDK does for its own reader)."""
    wire = os.dup(0)
    os.set_inheritable(wire, False)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return anyio.wrap_file(TextIOWrapper(os.fdopen(wire, "rb"), encoding="utf-8", errors="replace"))


async def _serve(server: MCPServer) -> None:
    stdin = CheckedStdin(_private_stdin())
    async with stdio_server(stdin=stdin) as (read_stream, write_stream):  # type: ignore[arg-type]
        stdin.replies = write_stream
        # What MCPServer.run_stdio_async does, with the checked stdin.
        lowlevel = server._lowlevel_server
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def run_stdio(server: MCPServer) -> int:
    """Serve ``server`` on stdio until the client closes it or goes away; the exit code."""
    try:
        anyio.run(_serve, server)
    except KeyboardInterrupt:
        return 130
    except BaseException as error:
        if not client_gone(error):
            raise
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
    return 0
