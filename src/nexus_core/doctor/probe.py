"""Probe an OpenAI-compatible gateway the way OpenCode talks to it, and say exactly what is wrong.

Two probes, both bounded by a deadline and both classifying every failure into a
:class:`ProbeCause` with a fix:

* :func:`probe_models` — ``GET {baseURL}/models`` with the key, timed per phase;
* :func:`probe_chat_stream` — a tiny streamed chat completion (SSE framing, ``[DONE]``, usage).

Phases (milliseconds, ``None`` when the phase did not happen): ``dns`` is our own
``getaddrinfo`` of the host (skipped for an IP literal or when a proxy carries the request),
``connect`` the TCP connect, ``tls`` the TLS handshake, ``first_byte`` from sending the request
to the response headers, ``total`` the whole exchange including the body. The connect, TLS
and first-byte figures come from httpx's ``trace`` extension.

A key is sent, never returned: every text a probe produces has been through a
:class:`~nexus_core.secrets.Redactor` that knows the key.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from nexus_core.doctor.transport import (
    _classify_transport,
    _Clock,
    _is_ip,
    _proxy_for,
    _resolve,
    _ssl_context,
    _timeout_verdict,
)
from nexus_core.doctor.verdicts import (
    ChatProbe,
    ModelsProbe,
    PhaseTimings,
    ProbeCause,
    _excerpt,
    _not_json,
    _status_verdict,
    _stream_error_verdict,
    _Verdict,
)
from nexus_core.secrets import Redactor

__all__ = [
    "ChatProbe",
    "ModelsProbe",
    "PhaseTimings",
    "ProbeCause",
    "probe_chat_stream",
    "probe_models",
]

MODELS_TIMEOUT_S = 2.0
CHAT_TIMEOUT_S = 15.0
# A model list larger than this is not a model list; an error body is cut far shorter.
_MAX_BODY_BYTES = 4 * 1024 * 1024
_MAX_SSE_LINE = 256 * 1024


@dataclass
class _Target:
    """One gateway as OpenCode would call it: its URL, key, extra headers, proxy and trusted roots."""

    base_url: str
    api_key: str | None
    headers: dict[str, str]
    key_source: str | None
    env: Mapping[str, str]
    host: str = ""
    port: int = 0
    clock: _Clock = field(default_factory=_Clock)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def proxy(self) -> str | None:
        return _proxy_for(self.base_url, self.env)

    def transport_verdict(self, exc: httpx.TransportError, url: str, timeout: float) -> _Verdict:
        """A network failure, blamed on the proxy when the request went through one."""
        verdict = _classify_transport(exc, url, self.host, self.port, self.clock, timeout)
        proxy = self.proxy()
        if proxy:
            parts = urlsplit(proxy)
            shown = f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts.hostname else "the proxy"
            verdict.summary += f" (through the proxy {shown} from {urlsplit(url).scheme.upper()}_PROXY)"
            verdict.fix += f"; or check the proxy, or add {self.host} to NO_PROXY if the gateway needs none"
        return verdict

    def client(self, timeout: float, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            verify=_ssl_context(self.env),
            proxy=self.proxy(),
            trust_env=False,
            **options,
        )

    def request_headers(self, accept: str) -> dict[str, str]:
        out = {"Accept": accept, **{k: v for k, v in self.headers.items() if isinstance(v, str)}}
        if self.api_key:
            out["Authorization"] = f"Bearer {self.api_key}"
        return out


def _model_ids(payload: Any) -> list[str]:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or not all(
        isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"] for m in data
    ):
        raise ValueError
    return [m["id"] for m in data]


async def _read_body(response: httpx.Response, limit: int) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[:limit].decode("utf-8", errors="replace")


def _split_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Verdict(
            ProbeCause.INVALID_URL,
            f"baseURL {url!r} is not an http(s) URL",
            "set provider.<id>.options.baseURL to the gateway's API root, e.g. https://gateway.example.com/v1",
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise _Verdict(
            ProbeCause.INVALID_URL, f"baseURL {url!r} has an invalid port", "fix the port in baseURL"
        ) from None
    return parts.hostname, port


async def probe_models(
    base_url: str,
    api_key: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    key_source: str | None = None,
    timeout: float = MODELS_TIMEOUT_S,
    redactor: Redactor | None = None,
    env: Mapping[str, str] | None = None,
) -> ModelsProbe:
    """``GET {base_url}/models`` with the key, within ``timeout`` seconds, classified and timed.

    ``key_source`` names where the key comes from (e.g. ``the CUSTOM_API_KEY environment
    variable``) for the fix texts. ``env`` (default ``os.environ``) supplies the proxy variables
    and the extra CA bundles OpenCode would use. Never raises for a network or gateway failure:
    the result says what happened.
    """
    redact = redactor or Redactor([api_key] if api_key else [])
    target = _Target(base_url, api_key, headers or {}, key_source, os.environ if env is None else env)
    url = target.url("/models")
    clock = target.clock
    auth_sent = bool(api_key)
    models: list[str] | None = None
    retry_after: str | None = None
    status: int | None = None
    try:
        async with asyncio.timeout(timeout):
            target.host, target.port = _split_url(base_url)
            if not _is_ip(target.host) and target.proxy() is None:
                await _resolve(target.host, target.port, clock)
            try:
                models, status = await _get_models(target, url, timeout)
            except _Verdict as not_found:
                if not_found.cause is ProbeCause.NOT_FOUND and not base_url.rstrip("/").endswith("/v1"):
                    await _confirm_v1(not_found, target)
                raise
    except TimeoutError:
        if clock.dns_ms is None and target.host and not _is_ip(target.host) and target.proxy() is None:
            verdict = _Verdict(
                ProbeCause.DNS_FAILURE,
                f"resolving {target.host} did not finish within {timeout:g} s",
                f"your DNS is not answering: check the VPN/resolver (`getent hosts {target.host}`)",
            )
        else:
            verdict = _timeout_verdict(url, target.where, clock, timeout)
        return _models_result(url, verdict, clock, auth_sent, redact)
    except _Verdict as failed:
        if failed.diagnosis is not None:
            retry_after = failed.diagnosis.retry_after
        return _models_result(url, failed, clock, auth_sent, redact, retry_after)
    timings = clock.timings()
    assert models is not None
    return ModelsProbe(
        url=url,
        cause=ProbeCause.OK,
        summary=f"{url} answered {status} with {len(models)} model(s)",
        status_code=status,
        auth_sent=auth_sent,
        timings=timings,
        models=models,
    )


def _models_result(
    url: str, verdict: _Verdict, clock: _Clock, auth_sent: bool, redact: Redactor, retry_after: str | None = None
) -> ModelsProbe:
    return ModelsProbe(
        url=url,
        cause=verdict.cause,
        summary=redact(verdict.summary),
        fix=redact(verdict.fix),
        detail=redact(verdict.detail),
        status_code=verdict.status,
        auth_sent=auth_sent,
        timings=clock.timings(),
        retry_after=retry_after,
        gateway=verdict.diagnosis.gateway if verdict.diagnosis else None,
        diagnosis=verdict.diagnosis.cause.value if verdict.diagnosis else None,
    )


async def _confirm_v1(verdict: _Verdict, target: _Target) -> None:
    """After a 404, see whether ``…/v1/models`` is the list, to make the fix certain."""
    candidate = target.url("/v1")
    try:
        async with target.client(1.0) as client:
            response = await client.get(candidate + "/models", headers=target.request_headers("application/json"))
        served = _model_ids(response.json()) if response.status_code == 200 else None
    except httpx.HTTPError:
        return
    except ValueError:
        served = None
    if served is not None:
        verdict.fix = f"set baseURL to {candidate}: GET {candidate}/models answers with {len(served)} model(s)"
    elif response.status_code == 404:
        verdict.fix = (
            f"baseURL must be the API root that serves /models and /chat/completions; "
            f"{candidate}/models is not found either: ask the gateway's owner for its API root"
        )


async def _get_models(target: _Target, url: str, timeout: float) -> tuple[list[str], int]:
    try:
        async with target.client(timeout, follow_redirects=True) as client:
            target.clock.restart()
            headers = target.request_headers("application/json")
            async with client.stream("GET", url, headers=headers, extensions={"trace": target.clock.trace}) as response:
                body = await _read_body(response, _MAX_BODY_BYTES)
    except httpx.TransportError as exc:
        raise target.transport_verdict(exc, url, timeout) from None
    if response.status_code != 200:
        raise _status_verdict(response, body, url, target.base_url, bool(target.api_key), target.key_source)
    try:
        payload = json.loads(body)
    except ValueError:
        kind = response.headers.get("content-type", "")
        if "json" in kind or body.lstrip()[:1] in ("{", "["):
            raise _Verdict(
                ProbeCause.MALFORMED_MODEL_LIST,
                f"{url} answers a model list that is not valid JSON (cut short or garbled)",
                "the gateway's /models is broken (or a proxy truncates it): check the gateway's logs",
                _excerpt(body),
                response.status_code,
            ) from None
        raise _not_json(url, response, body) from None
    try:
        return _model_ids(payload), response.status_code
    except ValueError:
        raise _Verdict(
            ProbeCause.MALFORMED_MODEL_LIST,
            f'{url} answers JSON that is not an OpenAI model list (expected {{"data": [{{"id": …}}]}})',
            "baseURL may point at a different API, or the gateway's /models is broken: check the gateway's version/docs",
            _excerpt(body),
            response.status_code,
        ) from None


async def probe_chat_stream(
    base_url: str,
    model: str,
    api_key: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    key_source: str | None = None,
    timeout: float = CHAT_TIMEOUT_S,
    redactor: Redactor | None = None,
    env: Mapping[str, str] | None = None,
) -> ChatProbe:
    """One tiny streamed chat completion straight to the gateway, as OpenCode sends it.

    Checks the SSE framing (``data:`` lines of JSON chunks), the final ``[DONE]`` and the usage
    chunk that ``stream_options.include_usage`` asks for. Never raises for a gateway failure.
    """
    redact = redactor or Redactor([api_key] if api_key else [])
    target = _Target(base_url, api_key, headers or {}, key_source, os.environ if env is None else env)
    url = target.url("/chat/completions")
    clock = target.clock
    state: dict[str, Any] = {
        "chunks": 0,
        "done": False,
        "usage": None,
        "text": [],
        "first_token_ms": None,
        "base_url": base_url,
        "model": model,
    }
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Reply with the single word OK."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 16,
    }
    try:
        async with asyncio.timeout(timeout):
            target.host, target.port = _split_url(base_url)
            verdict = await _stream_chat(target, url, body, timeout, state)
    except TimeoutError:
        if state["chunks"]:
            verdict = _Verdict(
                ProbeCause.STREAM_CUT,
                f"the stream stalled after {state['chunks']} chunk(s) and did not end within {timeout:g} s",
                "the gateway stops streaming mid-answer: check its logs and its upstream",
            )
        else:
            verdict = _timeout_verdict(url, target.where, clock, timeout)
    except _Verdict as failure:
        verdict = failure
    timings = clock.timings()
    return ChatProbe(
        url=url,
        model=model,
        cause=verdict.cause,
        summary=redact(verdict.summary),
        fix=redact(verdict.fix),
        detail=redact(verdict.detail),
        status_code=verdict.status,
        auth_sent=bool(api_key),
        timings=timings,
        chunks=state["chunks"],
        saw_done=state["done"],
        usage=state["usage"],
        reply_excerpt=redact(_excerpt("".join(state["text"]))),
        first_token_ms=state["first_token_ms"],
        gateway=verdict.diagnosis.gateway if verdict.diagnosis else None,
        diagnosis=verdict.diagnosis.cause.value if verdict.diagnosis else None,
    )


async def _stream_chat(
    target: _Target, url: str, body: dict[str, Any], timeout: float, state: dict[str, Any]
) -> _Verdict:
    clock = target.clock
    try:
        async with target.client(timeout) as client:
            clock.restart()
            headers = target.request_headers("text/event-stream")
            async with client.stream(
                "POST", url, json=body, headers=headers, extensions={"trace": clock.trace}
            ) as response:
                if response.status_code != 200:
                    text = await _read_body(response, 64 * 1024)
                    raise _status_verdict(
                        response, text, url, target.base_url, bool(target.api_key), target.key_source, body["model"]
                    )
                kind = response.headers.get("content-type", "")
                if "text/event-stream" not in kind:
                    text = await _read_body(response, 64 * 1024)
                    if "json" in kind:
                        return _Verdict(
                            ProbeCause.MALFORMED_STREAM,
                            "the gateway answered a streamed request with one JSON body instead of server-sent events",
                            "enable streaming on the gateway: OpenCode always streams",
                            _excerpt(text),
                            200,
                        )
                    raise _not_json(url, response, text)
                return await _read_sse(response, clock, state)
    except httpx.TransportError as exc:
        if state["chunks"]:
            return _Verdict(
                ProbeCause.STREAM_CUT,
                f"the stream was cut after {state['chunks']} chunk(s), before [DONE]",
                "the gateway or a proxy drops long responses: check its logs and proxy timeouts",
                str(exc),
                200,
            )
        raise target.transport_verdict(exc, url, timeout) from None


async def _read_sse(response: httpx.Response, clock: _Clock, state: dict[str, Any]) -> _Verdict:
    line_no = 0
    async for line in response.aiter_lines():
        line_no += 1
        if len(line) > _MAX_SSE_LINE:
            return _Verdict(
                ProbeCause.MALFORMED_STREAM,
                f"SSE line {line_no} is longer than {_MAX_SSE_LINE} bytes",
                "check the gateway's streaming output",
                "",
                200,
            )
        if not line or line.startswith((":", "event:", "id:", "retry:")):
            continue
        if not line.startswith("data:"):
            return _Verdict(
                ProbeCause.MALFORMED_STREAM,
                f"SSE line {line_no} is not a `data:` line",
                "the gateway's stream is not server-sent events as OpenAI sends them: fix the gateway or the proxy rewriting it",
                _excerpt(line),
                200,
            )
        payload = line[5:].strip()
        if payload == "[DONE]":
            state["done"] = True
            break
        try:
            chunk = json.loads(payload)
        except ValueError:
            return _Verdict(
                ProbeCause.MALFORMED_STREAM,
                f"SSE line {line_no} carries data that is not JSON",
                "the gateway's stream is malformed: fix the gateway or the proxy rewriting it",
                _excerpt(payload),
                200,
            )
        if not isinstance(chunk, dict):
            return _Verdict(
                ProbeCause.MALFORMED_STREAM,
                f"SSE line {line_no} is not a chunk object",
                "fix the gateway's streaming output",
                _excerpt(payload),
                200,
            )
        if isinstance(chunk.get("error"), dict):
            return _stream_error_verdict(chunk["error"], state.get("base_url", ""), state.get("model"))
        state["chunks"] += 1
        if chunk.get("usage"):
            state["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
            if content:
                if state["first_token_ms"] is None:
                    state["first_token_ms"] = round((time.perf_counter() - clock.start) * 1000, 1)
                state["text"].append(content)
    if not state["done"]:
        return _Verdict(
            ProbeCause.STREAM_CUT,
            f"the stream ended after {state['chunks']} chunk(s) without `data: [DONE]`",
            "the gateway or a proxy cuts the stream: check its logs and proxy timeouts",
            "",
            200,
        )
    return _Verdict(ProbeCause.OK, f"streamed {state['chunks']} chunk(s) and [DONE]", "", "", 200)
