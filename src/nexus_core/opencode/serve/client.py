"""HTTP and SSE client of one OpenCode server (the same calls on 1.2.15 and 1.18)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from nexus_core.opencode.serve.server import ServerHandle, http_client

__all__ = ["ServeClient"]

SSE_LINE_LIMIT = 4 * 1024 * 1024


class ServeClient:
    """Calls on one server. Use as ``async with``."""

    def __init__(self, server: ServerHandle, *, timeout_s: float = 30.0) -> None:
        self.server = server
        self._http = http_client(server.url, server.auth, timeout_s)

    async def __aenter__(self) -> ServeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def create_session(self) -> str:
        """A new session's id."""
        response = await self._http.post("/session", json={})
        response.raise_for_status()
        return str(response.json()["id"])

    async def prompt(
        self,
        session_id: str,
        text: str,
        *,
        provider_id: str,
        model_id: str,
        agent: str | None = None,
        variant: str | None = None,
    ) -> None:
        """Send a prompt without waiting for the answer (``prompt_async``)."""
        body: dict[str, Any] = {
            "model": {"providerID": provider_id, "modelID": model_id},
            "parts": [{"type": "text", "text": text}],
        }
        if agent:
            body["agent"] = agent
        if variant:
            body["variant"] = variant
        response = await self._http.post(f"/session/{session_id}/prompt_async", json=body)
        response.raise_for_status()

    async def abort(self, session_id: str) -> None:
        """Stop what the session is doing."""
        response = await self._http.post(f"/session/{session_id}/abort")
        response.raise_for_status()

    async def messages(self, session_id: str) -> list[dict[str, Any]]:
        """The session's messages with their parts."""
        response = await self._http.get(f"/session/{session_id}/message")
        response.raise_for_status()
        return list(response.json())

    async def reply_permission(self, session_id: str, permission_id: str, response: str) -> None:
        """Answer a permission question: ``once``, ``always`` or ``reject``."""
        answer = await self._http.post(
            f"/session/{session_id}/permissions/{permission_id}", json={"response": response}
        )
        answer.raise_for_status()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every payload of ``GET /event`` as it arrives (no read timeout: the stream is quiet when idle)."""
        import httpx

        timeout = httpx.Timeout(30.0, read=None)
        async with self._http.stream("GET", "/event", timeout=timeout) as response:
            response.raise_for_status()
            data: list[str] = []
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    if sum(map(len, data)) < SSE_LINE_LIMIT:
                        data.append(line[5:].lstrip())
                elif not line and data:
                    with _ignore_bad_json():
                        payload = json.loads("\n".join(data))
                        if isinstance(payload, dict):
                            yield payload.get("payload", payload) if "directory" in payload else payload
                    data = []


class _ignore_bad_json:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, ValueError)
