"""The reference gateway's HTTP side: HTTP/1.1 over asyncio streams with ``h11``, so every fault is exact.

:class:`GatewayHTTP` answers ``/v1/models`` and ``/v1/chat/completions`` (streamed or not) from
the scripts, faults and transcript in its :class:`~nexus_core.gateway.records.Controls`, and
records each request. :class:`~nexus_core.gateway.server.ReferenceGateway` adds its life cycle
and the controls a test uses.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, Literal

import h11

from nexus_core.gateway.faults import Fault, RequestKind
from nexus_core.gateway.records import Controls, RecordedRequest
from nexus_core.gateway.replies import (
    Turn,
    completion_body,
    completion_chunks,
    default_reply,
    is_title_request,
    prompt_tokens_of,
)
from nexus_core.secrets import REDACTED, Redactor, is_secret_key

__all__ = ["HOST", "GatewayHTTP"]

#: The only address it binds.
HOST = "127.0.0.1"
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


class GatewayHTTP:
    """The connection handling of the reference gateway (its subclass sets these attributes up)."""

    models: tuple[str, ...]
    api_key: str | None
    title: str
    max_body_bytes: int
    on_request: Callable[[RecordedRequest], None] | None
    _controls: Controls
    _redact: Redactor
    _connections: set[asyncio.Task[None]]

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
