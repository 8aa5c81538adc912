"""The loopback reference gateway: an OpenAI-compatible HTTP server with scripted replies and faults.

It speaks HTTP/1.1 itself (asyncio streams + ``h11``) so that every fault is exact: a dropped
connection really closes without a byte, a cut stream stops mid-chunk, a silent gateway holds the
connection open. It binds 127.0.0.1 only.

Use it from async code::

    async with ReferenceGateway() as gw:
        gw.script(match="hello", reply="Hi there")
        ...  # point OpenCode at gw.base_url

or from sync code and other processes (a background thread with its own event loop)::

    with ReferenceGateway(api_key="sk-test-1234") as gw:
        ...

Scripts, faults and the record of received requests may be changed and read from any thread
while it runs.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, Literal, Self

import h11
from pydantic import BaseModel, ConfigDict, Field

from nexus_core.errors import NexusError
from nexus_core.gateway.faults import Fault, RequestKind, parse_fault_spec
from nexus_core.gateway.replies import (
    Script,
    ToolCall,
    Turn,
    assistant_turns_since_last_user,
    completion_body,
    completion_chunks,
    default_reply,
    is_title_request,
    last_user_text,
    prompt_tokens_of,
)
from nexus_core.gateway.transcripts import Transcript
from nexus_core.secrets import REDACTED, Redactor, is_secret_key

__all__ = ["DEFAULT_MODELS", "DEFAULT_TITLE", "RecordedRequest", "ReferenceGateway"]

DEFAULT_MODELS: tuple[str, ...] = ("claude-opus-4-5", "claude-sonnet-4-5")
DEFAULT_TITLE = "Gateway test session"

_HOST = "127.0.0.1"
_READ_SIZE = 65536
_IDLE_TIMEOUT = 120.0
_NOT_JSON = object()
_SECRET_HEADERS = frozenset({"cookie", "set-cookie"})
_LOGIN_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sign in - Corporate Proxy</title></head>\n"
    '<body><h1>Sign in to continue</h1><form method="post" action="/login">'
    '<input name="user"><input name="password" type="password"><button>Sign in</button></form></body></html>\n'
)
_BAD_GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n"
)
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("Bad request.", "invalid_request_error", "bad_request"),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "permission_error", "permission_denied"),
    404: ("Not found.", "invalid_request_error", "not_found"),
    405: ("Method not allowed.", "invalid_request_error", "method_not_allowed"),
    413: ("Request body too large.", "invalid_request_error", "request_too_large"),
    429: ("Rate limit reached for requests. Please try again later.", "rate_limit_error", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", "internal_error"),
    503: ("The server is overloaded. Please try again later.", "server_error", "overloaded"),
}


class RecordedRequest(BaseModel):
    """One request the gateway received, as a test wants to see it.

    ``headers`` are lower-cased and redacted (``authorization: Bearer [redacted]``); ``bearer``
    says whether a bearer key was sent and whether it is the gateway's ``api_key``.
    ``outcome`` is what the gateway did: a status code as text (``"200"``, ``"429"``), or
    ``"drop"``, ``"cut"``, ``"silent"``, ``"malformed-sse"``, ``"html"`` (the 200 login page),
    ``"bad-models"``; ``"closed"`` if the connection ended first; empty while it is being answered.
    """

    model_config = ConfigDict(extra="forbid")

    seq: int
    at: float
    method: str
    path: str
    kind: RequestKind
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    messages: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    body_bytes: int = 0
    bearer: Literal["absent", "expected", "other"] = "absent"
    outcome: str = ""

    @property
    def last_user_text(self) -> str:
        """The text of the request's last user message."""
        return last_user_text(self.messages)


class _Controls:
    """The mutable state shared between the server's loop and the caller's threads."""

    def __init__(self, faults: Iterable[Fault], record_limit: int) -> None:
        self.lock = threading.Condition()
        self.faults: list[tuple[Fault, list[int | None]]] = [(f, [f.times]) for f in faults]
        self.scripts: list[tuple[Script, list[int | None]]] = []
        self.records: deque[RecordedRequest] = deque(maxlen=record_limit)
        self.seq = 0
        self.call_seq = 0
        self.replay: Transcript | None = None

    def take_faults(self, kind: RequestKind, path: str, model: str | None) -> tuple[float, Fault | None]:
        """The latency to apply and the first other fault for this request; counts them down."""
        latency, chosen = 0.0, None
        with self.lock:
            for fault, left in list(self.faults):
                if not fault.applies_to(kind, path, model):
                    continue
                if fault.kind == "latency":
                    if latency:
                        continue
                    latency = fault.seconds
                elif chosen is None:
                    chosen = fault
                else:
                    continue
                if left[0] is not None:
                    left[0] -= 1
                    if left[0] <= 0:
                        self.faults.remove((fault, left))
        return latency, chosen

    def take_script(self, messages: list[dict[str, Any]]) -> Script | None:
        text = last_user_text(messages)
        first_turn = assistant_turns_since_last_user(messages) == 0
        with self.lock:
            for script, left in self.scripts:
                if script.match not in text:
                    continue
                if first_turn and left[0] is not None:
                    if left[0] <= 0:
                        continue  # used up for new runs, but still answers the follow-ups of its runs
                    left[0] -= 1
                return script
        return None

    def call_ids(self, count: int) -> list[str]:
        with self.lock:
            start = self.call_seq
            self.call_seq += count
        return [f"call_{n:04d}" for n in range(start + 1, start + count + 1)]


class ReferenceGateway:
    """An OpenAI-compatible gateway on 127.0.0.1 for tests, demos and set-up checks.

    ``port=0`` picks a free port. ``models`` are the model ids it serves (others get an
    OpenAI-style 404 ``model_not_found``). With ``api_key`` set, a request without
    ``Authorization: Bearer <api_key>`` gets 401. ``faults`` are active from the start.
    The last ``record_limit`` requests are kept (see :attr:`requests`). ``on_request`` is
    called (in the server's thread) with each request once it has been answered.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        models: Iterable[str] = DEFAULT_MODELS,
        api_key: str | None = None,
        faults: Iterable[Fault | str] = (),
        title: str = DEFAULT_TITLE,
        record_limit: int = 64,
        max_body_bytes: int = 32 * 1024 * 1024,
        on_request: Callable[[RecordedRequest], None] | None = None,
    ) -> None:
        self.models: tuple[str, ...] = tuple(models)
        self.api_key = api_key or None
        self.title = title
        self.max_body_bytes = max_body_bytes
        self.on_request = on_request
        self._requested_port = port
        self._controls = _Controls([_as_fault(f) for f in faults], record_limit)
        self._redact = Redactor([api_key] if api_key else [])
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None

    # -- where it is --------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on (after start)."""
        if self._port is None:
            raise RuntimeError("the gateway is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: what goes in OpenCode's ``baseURL``."""
        return f"http://{_HOST}:{self.port}/v1"

    # -- async life cycle ---------------------------------------------------------------

    async def start(self) -> Self:
        """Listen on 127.0.0.1. Raises :class:`NexusError` if the port cannot be bound."""
        try:
            self._server = await asyncio.start_server(self._on_connection, _HOST, self._requested_port)
        except OSError as exc:
            raise NexusError(
                f"The reference gateway cannot listen on {_HOST}:{self._requested_port} ({exc.strerror or exc})",
                "Pick another port with --port, or --port 0 for a free one",
            ) from None
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        """Stop listening and end every open connection (silent ones included)."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)
        await asyncio.wait_for(self._server.wait_closed(), timeout=5)
        self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- thread life cycle (sync code, other processes) ---------------------------------

    def start_in_thread(self, timeout: float = 10.0) -> Self:
        """Run the gateway on its own event loop in a daemon thread; returns once it listens."""
        if self._thread is not None or self._server is not None:
            raise RuntimeError("the gateway is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:  # handed to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._thread_stop.wait()
            finally:
                await self.aclose()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="nexus-reference-gateway", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise NexusError(f"The reference gateway did not start within {timeout:g}s", "Try again")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a gateway started with :meth:`start_in_thread` and wait for its thread."""
        if self._thread is None or self._thread_loop is None or self._thread_stop is None:
            return
        self._thread_loop.call_soon_threadsafe(self._thread_stop.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start_in_thread()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- controls (any thread, while running) --------------------------------------------

    def add_fault(self, fault: Fault | str) -> Fault:
        """Inject a fault (a :class:`Fault` or a CLI spec such as ``"429,times=2"``)."""
        parsed = _as_fault(fault)
        with self._controls.lock:
            self._controls.faults.append((parsed, [parsed.times]))
        return parsed

    def replay(self, transcript: Transcript | None) -> None:
        """Answer every request a transcript recorded as the real gateway did (None: stop replaying)."""
        with self._controls.lock:
            self._controls.replay = transcript

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._controls.lock:
            self._controls.faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """The active faults (those with ``times`` left)."""
        with self._controls.lock:
            return [f for f, _ in self._controls.faults]

    def script(
        self,
        match: str,
        reply: str | None = None,
        *,
        tool_calls: Iterable[ToolCall | tuple[str, dict[str, Any]]] = (),
        then: str | None = None,
        reasoning: str = "",
        finish: Literal["stop", "length"] = "stop",
        turns: Iterable[Turn] = (),
        times: int | None = None,
    ) -> Script:
        """Script the answer for requests whose last user message contains ``match``.

        ``reply`` alone: that text. ``tool_calls`` (``ToolCall`` or ``(name, arguments)``): the
        first request gets those calls and the follow-up that carries their results gets
        ``then`` (default ``Tool <name> returned: <result preview>``); ``reply`` before tool
        calls is text sent with them; ``reasoning`` is the first turn's thinking; ``finish="length"``
        ends a text reply as if cut at the token limit. ``turns`` gives the whole sequence explicitly. Newer
        scripts win over older ones; ``times`` limits how many runs it answers.
        """
        sequence = list(turns)
        if not sequence:
            calls = tuple(c if isinstance(c, ToolCall) else ToolCall(name=c[0], arguments=c[1]) for c in tool_calls)
            if calls:
                sequence = [Turn(text=reply or "", reasoning=reasoning, tool_calls=calls)]
                sequence += [Turn(text=then)] if then is not None else []
            else:
                sequence = [Turn(text=reply or "", reasoning=reasoning, finish=finish)]
        scripted = Script(match=match, turns=tuple(sequence), times=times)
        with self._controls.lock:
            self._controls.scripts.insert(0, (scripted, [times]))
        return scripted

    def clear_scripts(self) -> None:
        """Remove every script (back to the default ``Reply to: …`` answers)."""
        with self._controls.lock:
            self._controls.scripts.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """The recorded requests, oldest first (a copy)."""
        with self._controls.lock:
            return list(self._controls.records)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._controls.lock:
            self._controls.records.clear()

    def wait_for_requests_blocking(
        self, count: int, *, kind: RequestKind | None = "chat", timeout: float = 10.0
    ) -> list[RecordedRequest]:
        """Block until ``count`` answered requests of ``kind`` (any if None) are recorded; returns them.

        Raises :class:`TimeoutError` after ``timeout`` seconds. For sync code with a threaded gateway.
        """
        deadline = time.monotonic() + timeout
        with self._controls.lock:
            while True:
                found = self._answered(kind)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)} of {count} {kind or 'any'} requests arrived within {timeout:g}s")
                self._controls.lock.wait(left)

    async def wait_for_requests(
        self, count: int, *, kind: RequestKind | None = "chat", timeout: float = 10.0
    ) -> list[RecordedRequest]:
        """Wait until ``count`` answered requests of ``kind`` are recorded (async; see the blocking form)."""
        return await asyncio.to_thread(self.wait_for_requests_blocking, count, kind=kind, timeout=timeout)

    def _answered(self, kind: RequestKind | None) -> list[RecordedRequest]:
        return [r for r in self._controls.records if r.outcome and (kind is None or r.kind == kind)]

    # -- HTTP -----------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve_connection(reader, writer)
        except (TimeoutError, ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        while True:
            try:
                received = await self._read_request(conn, reader, writer)
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send_json(
                        conn,
                        writer,
                        exc.error_status_hint,
                        _error_body(400, f"Malformed HTTP request: {exc}."),
                        close=True,
                    )
                return
            if received is None:
                return
            request, body = received
            keep_open = await self._answer(conn, reader, writer, request, body)
            if not keep_open or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(_READ_SIZE), _IDLE_TIMEOUT)
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
                if conn.they_are_waiting_for_100_continue:
                    await self._send(conn, writer, h11.InformationalResponse(status_code=100, headers=[]))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body_bytes:
                    await self._send_json(conn, writer, 413, _error_body(413), close=True)
                    return None
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body)
            else:  # ConnectionClosed or PAUSED
                return None

    async def _answer(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
    ) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        method = request.method.decode("ascii", "replace").upper()
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        payload: Any = None
        if method == "POST" and path.rstrip("/").endswith("/chat/completions"):
            try:
                payload = json.loads(body)
            except ValueError:
                payload = _NOT_JSON
        record = self._record(method, path, request.headers, body, payload)
        authorized = self.api_key is None or _bearer(request.headers) == self.api_key
        try:
            return await self._respond(conn, reader, writer, record, payload, authorized)
        finally:
            with self._controls.lock:
                record.outcome = record.outcome or "closed"
                self._controls.lock.notify_all()
            if self.on_request is not None:
                self.on_request(record)

    async def _respond(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
        payload: Any,
        authorized: bool,
    ) -> bool:
        latency, fault = self._controls.take_faults(record.kind, record.path, record.model)
        if latency:
            await asyncio.sleep(latency)
        if fault is not None:
            return await self._apply_fault(fault, conn, reader, writer, record)
        recorded = (
            self._controls.replay.answer_for(record.method, record.path, record.model)
            if self._controls.replay
            else None
        )
        if recorded is not None:
            record.outcome = f"replay {recorded.status}"
            body, kind, extra = recorded.body.encode(), recorded.content_type(), recorded.replay_headers()
            extra = [(k, v) for k, v in extra if k.lower() != "content-type"]
            return await self._send_body(conn, writer, recorded.status, body, kind, headers=extra)
        if not authorized:
            return await self._error(conn, writer, record, 401)
        if record.kind == "models":
            record.outcome = "200"
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "nexus-reference-gateway"} for m in self.models
            ]
            return await self._send_json(conn, writer, 200, {"object": "list", "data": data})
        if record.kind == "other":
            if record.path.rstrip("/").endswith(("/chat/completions", "/models")):
                return await self._error(conn, writer, record, 405)
            return await self._error(conn, writer, record, 404, f"Unknown path {record.path}.")
        if payload is _NOT_JSON:
            return await self._error(conn, writer, record, 400, "The request body is not valid JSON.")
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list) or not record.model:
            return await self._error(conn, writer, record, 400, "A chat request needs `model` and `messages`.")
        if record.model not in self.models:
            return await self._error(
                conn,
                writer,
                record,
                404,
                f"The model `{record.model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return await self._complete(conn, writer, record)

    async def _complete(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
        *,
        cut: bool = False,
        malformed: bool = False,
    ) -> bool:
        turn = self._turn_for(record)
        assert record.model is not None
        call_ids = self._controls.call_ids(len(turn.tool_calls))
        prompt_tokens = prompt_tokens_of(record.messages)
        if not record.stream:
            data = completion_body(model=record.model, turn=turn, call_ids=call_ids, prompt_tokens=prompt_tokens)
            if cut:
                record.outcome = "cut"
                encoded = json.dumps(data).encode()
                await self._send(
                    conn,
                    writer,
                    _response(200, [("content-type", "application/json"), ("content-length", str(len(encoded)))]),
                )
                await self._send(conn, writer, h11.Data(data=encoded[: len(encoded) // 2]))
                return False
            record.outcome = "200"
            return await self._send_json(conn, writer, 200, data)
        chunks = completion_chunks(
            model=record.model,
            turn=turn,
            call_ids=call_ids,
            prompt_tokens=prompt_tokens,
            include_usage=record.include_usage,
        )
        await self._send(
            conn, writer, _response(200, [("content-type", "text/event-stream"), ("cache-control", "no-cache")])
        )
        if malformed:
            record.outcome = "malformed-sse"
            for line in (
                'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": "Hel',
                "data: lo world}\n",
                "data: <html>",
            ):
                await self._send(conn, writer, h11.Data(data=f"{line}\n\n".encode()))
            await self._send(conn, writer, h11.Data(data=b"data: [DONE]\n\n"))
            await self._send(conn, writer, h11.EndOfMessage())
            return True
        if cut:
            record.outcome = "cut"
            for chunk in chunks[: max(2, len(chunks) // 2)]:
                await self._send(conn, writer, h11.Data(data=_sse(chunk)))
            # Half a chunk, then the connection ends: no finish_reason, no [DONE], no end of body.
            await self._send(conn, writer, h11.Data(data=_sse(chunks[-1])[:20]))
            return False
        record.outcome = "200"
        for chunk in chunks:
            await self._send(conn, writer, h11.Data(data=_sse(chunk)))
        await self._send(conn, writer, h11.Data(data=b"data: [DONE]\n\n"))
        await self._send(conn, writer, h11.EndOfMessage())
        return True

    def _turn_for(self, record: RecordedRequest) -> Turn:
        if record.kind == "title":
            return Turn(text=self.title)
        script = self._controls.take_script(record.messages)
        if script is None:
            return Turn(text=default_reply(record.messages))
        return script.turn_for(record.messages)

    async def _apply_fault(
        self,
        fault: Fault,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
    ) -> bool:
        if fault.kind == "drop":
            record.outcome = "drop"
            return False
        if fault.kind == "silent":
            record.outcome = "silent"
            with self._controls.lock:
                self._controls.lock.notify_all()
            while await reader.read(_READ_SIZE):
                pass
            return False
        if fault.kind == "status":
            if fault.code == 502:
                record.outcome = "502"
                return await self._send_body(conn, writer, 502, _BAD_GATEWAY_PAGE.encode(), "text/html")
            extra = [("retry-after", str(fault.retry_after))] if fault.code in (429, 503) else []
            return await self._error(conn, writer, record, fault.code, headers=extra)
        if fault.kind == "html":
            record.outcome = "html"
            return await self._send_body(conn, writer, 200, _LOGIN_PAGE.encode(), "text/html; charset=utf-8")
        if fault.kind == "bad-models":
            record.outcome = "bad-models"
            body = (
                json.dumps({"object": "list", "models": list(self.models)})
                if fault.shape
                else '{"object": "list", "data": [{"id": '
            )
            return await self._send_body(conn, writer, 200, body.encode(), "application/json")
        if record.kind not in ("chat", "title") or not record.model:
            # cut / malformed-sse aimed at a path without a chat answer: half a JSON body.
            record.outcome = "cut"
            await self._send(
                conn, writer, _response(200, [("content-type", "application/json"), ("content-length", "64")])
            )
            await self._send(conn, writer, h11.Data(data=b'{"object": "list", "data": ['))
            return False
        return await self._complete(
            conn, writer, record, cut=fault.kind == "cut", malformed=fault.kind == "malformed-sse"
        )

    # -- records and bytes ---------------------------------------------------------------

    def _record(
        self, method: str, path: str, raw_headers: Iterable[tuple[bytes, bytes]], body: bytes, payload: Any
    ) -> RecordedRequest:
        headers = {}
        for name, value in raw_headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            if key == "authorization":
                scheme, _, credential = text.partition(" ")
                text = f"{scheme} {REDACTED}" if credential else REDACTED
            elif is_secret_key(key) or key in _SECRET_HEADERS:
                text = REDACTED
            headers[key] = self._redact(text)
        kind: RequestKind = "other"
        if method == "GET" and path.rstrip("/").endswith("/models"):
            kind = "models"
        elif payload is not None:
            kind = "chat"
        if not isinstance(payload, dict):
            payload = {}
        messages = [m for m in payload.get("messages") or [] if isinstance(m, dict)]
        if kind == "chat" and is_title_request(messages):
            kind = "title"
        stream_options = payload.get("stream_options")
        sent_key = _bearer(raw_headers)
        bearer: Literal["absent", "expected", "other"] = (
            "absent" if not sent_key else "expected" if sent_key == self.api_key else "other"
        )
        with self._controls.lock:
            self._controls.seq += 1
            record = RecordedRequest(
                seq=self._controls.seq,
                at=time.time(),
                method=method,
                path=path,
                kind=kind,
                model=payload.get("model") if isinstance(payload.get("model"), str) else None,
                stream=payload.get("stream") is True,
                include_usage=isinstance(stream_options, dict) and stream_options.get("include_usage") is True,
                messages=messages,
                tools=[
                    str((t.get("function") or {}).get("name", ""))
                    for t in payload.get("tools") or []
                    if isinstance(t, dict)
                ],
                headers=headers,
                body_bytes=len(body),
                bearer=bearer,
            )
            self._controls.records.append(record)
        return record

    async def _error(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
        status: int,
        message: str | None = None,
        *,
        code: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> bool:
        record.outcome = str(status)
        return await self._send_json(conn, writer, status, _error_body(status, message, code), headers=headers)

    async def _send_json(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        data: Any,
        *,
        headers: list[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> bool:
        return await self._send_body(
            conn, writer, status, json.dumps(data).encode(), "application/json", headers=headers, close=close
        )

    async def _send_body(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> bool:
        all_headers = [("content-type", content_type), ("content-length", str(len(body))), *(headers or [])]
        if close:
            all_headers.append(("connection", "close"))
        await self._send(conn, writer, _response(status, all_headers))
        await self._send(conn, writer, h11.Data(data=body))
        await self._send(conn, writer, h11.EndOfMessage())
        return not close

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Event) -> None:
        data = conn.send(event)
        if data:
            writer.write(data)
            await writer.drain()


def _as_fault(fault: Fault | str) -> Fault:
    return parse_fault_spec(fault) if isinstance(fault, str) else fault


def _response(status: int, headers: list[tuple[str, str]]) -> h11.Response:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return h11.Response(status_code=status, headers=headers, reason=reason)


def _bearer(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            return credential.strip() if scheme.lower() == "bearer" else None
    return None


def _error_body(status: int, message: str | None = None, code: str | None = None) -> dict[str, Any]:
    default_message, kind, default_code = _ERRORS.get(status, (f"HTTP {status}.", "api_error", f"http_{status}"))
    return {"error": {"message": message or default_message, "type": kind, "param": None, "code": code or default_code}}


def _sse(chunk: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(chunk)}\n\n".encode()
