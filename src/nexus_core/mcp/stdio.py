"""The MCP server's stdio life: serving until the client goes, and going quietly when it is gone.

A client killed with SIGKILL closes both pipes at once. Answers still on their way then fail with
``BrokenPipeError`` inside the SDK's task group, which ends it with an ``ExceptionGroup``; that is
the client's exit, not a server fault, so the server ends with status 0 and says nothing (and
stdout is pointed at the null device, so that Python's own flush at exit cannot complain either).

The SDK drops a line it cannot read as a JSON-RPC message without an answer, so a client that sent
a request with the wrong shape (``params`` an array) or nested too deep for the SDK's parser (which
stops at a few hundred levels) would wait for ever. Each line is checked first; a request that would be
dropped gets a JSON-RPC error with its id (``-32600`` invalid request, ``-32700`` for a line that
is not JSON at all, or too deep to read), written between the SDK's lines so frames never tear.

Only public API: the server runs with ``MCPServer.run_stdio_async``, on ``sys.stdin`` and
``sys.stdout`` stand-ins whose buffers are the checked wire (the SDK serves a standard stream's
buffer in place when it is not backed by fd 0 or 1).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import threading
from typing import Any, BinaryIO, TextIO, cast

import anyio
import mcp_types as types
from mcp.server.mcpserver import MCPServer

__all__ = ["client_gone", "invalid_reply", "run_stdio"]

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


class _CheckedWire(io.RawIOBase):
    """The client's lines for the SDK; one the SDK would drop unanswered is answered here instead."""

    def __init__(self, wire: BinaryIO, out: _WireWriter) -> None:
        self._wire = wire
        self._out = out
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            line = self._wire.readline()
            if not line:
                return 0
            self._pending = self._checked(line)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _checked(self, line: bytes) -> bytes:
        text = line.decode("utf-8", "replace")
        try:
            types.jsonrpc_message_adapter.validate_json(text, by_name=False)
        except ValueError:
            reply = invalid_reply(text)
            if reply is not None:
                self._out.send_line(reply.model_dump_json(by_alias=True, exclude_unset=True).encode())
                return b""
        return line


class _WireWriter(io.RawIOBase):
    """The wire to the client: the SDK's bytes go out a whole line at a time, so that a reply sent
    from the reader (:meth:`send_line`) never lands inside one of the SDK's frames."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._partial = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        with self._lock:
            self._partial += chunk
            end = self._partial.rfind(b"\n") + 1
            if end:
                whole, self._partial = bytes(self._partial[:end]), self._partial[end:]
                self._write_all(whole)
        return len(chunk)

    def send_line(self, line: bytes) -> None:
        """Write one line of ours between the SDK's lines."""
        with self._lock:
            self._write_all(line + b"\n")

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


class _Std:
    """A stand-in for ``sys.stdin`` / ``sys.stdout`` whose ``buffer`` is the wire (what the SDK reads
    and writes when the stream is not backed by fd 0 or 1); text written to it goes where ``text`` goes."""

    def __init__(self, text: TextIO, buffer: io.BufferedIOBase) -> None:
        self._text = text
        self.buffer = buffer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._text, name)


def _take_wire() -> tuple[BinaryIO, int]:
    """The wire on private descriptors; fd 0 on the null device and fd 1 on stderr, so that children
    and stray prints never read or write it (what the SDK does when it claims the descriptors itself)."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    os.set_inheritable(wire_in, False)
    os.set_inheritable(wire_out, False)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return os.fdopen(wire_in, "rb"), wire_out


async def _serve(server: MCPServer) -> None:
    wire_in, wire_out = _take_wire()
    writer = _WireWriter(wire_out)
    stdin, stdout = sys.stdin, sys.stdout
    # The SDK serves sys.stdin.buffer and sys.stdout.buffer in place when they are not fd 0 and 1.
    sys.stdin = cast(TextIO, _Std(stdin, io.BufferedReader(_CheckedWire(wire_in, writer))))
    sys.stdout = cast(TextIO, _Std(stdout, io.BufferedWriter(writer)))
    try:
        await server.run_stdio_async()
    finally:
        sys.stdin, sys.stdout = stdin, stdout


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
