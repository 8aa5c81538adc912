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
import contextlib
import errno
import functools
import ipaddress
import json
import os
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx
from pydantic import BaseModel, ConfigDict

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
_EXCERPT_CHARS = 300
_MAX_SSE_LINE = 256 * 1024


class ProbeCause(StrEnum):
    """Why a probe failed (or ``ok``). Stable strings: scripts and the dashboard read them."""

    OK = "ok"
    INVALID_URL = "invalid_url"
    DNS_FAILURE = "dns_failure"
    CONNECTION_REFUSED = "connection_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    TLS_ERROR = "tls_error"
    TIMEOUT = "timeout"
    CONNECTION_DROPPED = "connection_dropped"
    NETWORK_ERROR = "network_error"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    UNEXPECTED_STATUS = "unexpected_status"
    NOT_JSON = "not_json"
    MALFORMED_MODEL_LIST = "malformed_model_list"
    MODEL_NOT_SERVED = "model_not_served"
    MALFORMED_STREAM = "malformed_stream"
    STREAM_CUT = "stream_cut"


class PhaseTimings(BaseModel):
    """Milliseconds spent in each phase of one HTTP exchange (``None``: not reached or not applicable)."""

    model_config = ConfigDict(frozen=True)

    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    first_byte_ms: float | None = None
    total_ms: float | None = None


class _ProbeBase(BaseModel):
    url: str
    cause: ProbeCause
    summary: str
    fix: str = ""
    detail: str = ""
    status_code: int | None = None
    auth_sent: bool = False
    timings: PhaseTimings = PhaseTimings()

    @property
    def ok(self) -> bool:
        return self.cause is ProbeCause.OK


class ModelsProbe(_ProbeBase):
    """The verdict of ``GET {baseURL}/models``: the served model ids when it worked."""

    models: list[str] | None = None
    retry_after: str | None = None


class ChatProbe(_ProbeBase):
    """The verdict of one streamed chat completion straight to the gateway."""

    model: str
    chunks: int = 0
    saw_done: bool = False
    usage: dict[str, Any] | None = None
    reply_excerpt: str = ""
    first_token_ms: float | None = None


class _Clock:
    """Per-phase stopwatch fed by httpx trace events."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.dns_ms: float | None = None
        self._marks: dict[str, float] = {}

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's ``trace`` extension hook: remember when each phase started and ended."""
        self._marks[event.split(".", 1)[1] if "." in event else event] = time.perf_counter()

    def _span(self, begin: str, end: str) -> float | None:
        """From ``begin`` to ``end`` (or to its ``.failed`` twin, so a refused connect is timed too)."""
        finish = self._marks.get(end, self._marks.get(end.removesuffix(".complete") + ".failed"))
        if begin in self._marks and finish is not None:
            return round((finish - self._marks[begin]) * 1000, 1)
        return None

    def reached(self, name: str) -> bool:
        return name in self._marks

    def restart(self) -> None:
        """Start the exchange's clock now, after the client is set up (that is not the gateway's time)."""
        self.start = time.perf_counter()

    def timings(self) -> PhaseTimings:
        first_byte = self._span("send_request_headers.started", "receive_response_headers.complete")
        total = round((time.perf_counter() - self.start) * 1000 + (self.dns_ms or 0.0), 1)
        return PhaseTimings(
            dns_ms=self.dns_ms,
            connect_ms=self._span("connect_tcp.started", "connect_tcp.complete"),
            tls_ms=self._span("start_tls.started", "start_tls.complete"),
            first_byte_ms=first_byte,
            total_ms=total,
        )


class _Verdict(Exception):
    """A classified failure on the way; carries what the probe result needs."""

    def __init__(self, cause: ProbeCause, summary: str, fix: str, detail: str = "", status: int | None = None) -> None:
        super().__init__(summary)
        self.cause, self.summary, self.fix, self.detail, self.status = cause, summary, fix, detail, status


def _proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy OpenCode would use for ``url`` (``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY`` matches)."""
    parts = urlsplit(url)
    lowered = {k.lower(): v for k, v in env.items()}
    proxy = lowered.get(f"{parts.scheme}_proxy")
    if not proxy:
        return None
    host = parts.hostname or ""
    for entry in lowered.get("no_proxy", "").split(","):
        entry = entry.strip().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return None
    return proxy


def _ssl_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """The roots OpenCode trusts (Mozilla's) plus ``NODE_EXTRA_CA_CERTS``, and ``SSL_CERT_FILE``/``DIR``."""
    sources = tuple((name, env.get(name) or "", _mtime(env.get(name))) for name in ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "SSL_CERT_DIR"))
    return _cached_ssl_context(sources)


def _mtime(path: str | None) -> float:
    try:
        return os.stat(path).st_mtime if path else 0.0
    except OSError:
        return 0.0


@functools.lru_cache(maxsize=8)
def _cached_ssl_context(sources: tuple[tuple[str, str, float], ...]) -> ssl.SSLContext:
    # Loading the bundles takes longer than a loopback request: build each combination once.
    context = ssl.create_default_context(cafile=certifi.where())
    for name, path, _ in sources:
        if not path:
            continue
        # A missing or unreadable bundle shows up as an untrusted certificate, which names the fix.
        with contextlib.suppress(OSError, ssl.SSLError):
            if name == "SSL_CERT_DIR":
                context.load_verify_locations(capath=path)
            else:
                context.load_verify_locations(cafile=path)
    return context


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

    def transport_verdict(self, exc: httpx.TransportError, url: str, timeout: float) -> "_Verdict":
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
            timeout=httpx.Timeout(timeout), verify=_ssl_context(self.env), proxy=self.proxy(), trust_env=False, **options
        )

    def request_headers(self, accept: str) -> dict[str, str]:
        out = {"Accept": accept, **{k: v for k, v in self.headers.items() if isinstance(v, str)}}
        if self.api_key:
            out["Authorization"] = f"Bearer {self.api_key}"
        return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int, clock: _Clock) -> None:
    began = time.perf_counter()
    try:
        await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _Verdict(
            ProbeCause.DNS_FAILURE,
            f"the gateway host {host} does not resolve ({exc.strerror})",
            f"check the host name in baseURL (a typo?), or your DNS/VPN: `getent hosts {host}` must print an address",
        ) from None
    finally:
        clock.dns_ms = round((time.perf_counter() - began) * 1000, 1)
        clock.restart()


def _root_causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _classify_transport(exc: httpx.TransportError, url: str, host: str, port: int, clock: _Clock, deadline: float) -> _Verdict:
    """Turn an httpx transport failure into a named cause with its fix."""
    where = f"{host}:{port}"
    chain = _root_causes(exc)
    ssl_error = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    os_error = next((e for e in chain if isinstance(e, OSError) and e.errno is not None), None)
    text = " ".join(str(e) for e in chain).lower()
    if ssl_error is not None or "ssl" in text or "certificate" in text:
        reason = str(ssl_error or exc)
        if "wrong_version_number" in reason.lower() or "record layer" in reason.lower() or "packet length too long" in reason.lower():
            return _Verdict(
                ProbeCause.TLS_ERROR,
                f"TLS handshake with {where} failed: the server does not speak TLS on that port",
                "baseURL says https:// but the server answers plain HTTP: use http:// (or the gateway's TLS port)",
                reason,
            )
        if "certificate" in reason.lower() or isinstance(ssl_error, ssl.SSLCertVerificationError):
            return _Verdict(
                ProbeCause.TLS_ERROR,
                f"TLS certificate of {host} is not trusted",
                "install your company's CA certificate: export NODE_EXTRA_CA_CERTS=/path/ca.pem for OpenCode "
                "(and SSL_CERT_FILE for nexus), or fix the gateway's certificate",
                reason,
            )
        if "eof" in reason.lower():
            return _Verdict(
                ProbeCause.TLS_ERROR,
                f"TLS handshake with {where} failed: the server closed the connection mid-handshake",
                "if the gateway serves plain HTTP on that port, use http:// in baseURL; otherwise check the port and its TLS set-up",
                reason,
            )
        return _Verdict(
            ProbeCause.TLS_ERROR,
            f"TLS handshake with {where} failed",
            "check that baseURL's scheme (https:// or http://) and port match the gateway's TLS set-up",
            reason,
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return _Verdict(
            ProbeCause.CONNECT_TIMEOUT,
            f"no TCP connection to {where} within {deadline:g} s (packets dropped: firewall, VPN or a wrong host)",
            "check that the gateway host and port in baseURL are reachable from here (VPN up? firewall?)",
        )
    if isinstance(exc, httpx.TimeoutException):
        return _timeout_verdict(url, where, clock, deadline)
    if (os_error is not None and os_error.errno == errno.ECONNREFUSED) or "connection refused" in text or "connect call failed" in text:
        return _Verdict(
            ProbeCause.CONNECTION_REFUSED,
            f"connection refused by {where}: nothing listens there",
            f"start the gateway, or correct the host/port in baseURL ({url.removesuffix('/models').removesuffix('/chat/completions')})",
        )
    if clock.reached("receive_response_headers.complete"):
        return _Verdict(
            ProbeCause.CONNECTION_DROPPED,
            f"{where} started answering, then closed the connection mid-body",
            "the gateway (or a proxy/load balancer in front of it) cuts answers short: check its logs and proxy timeouts",
            str(exc),
        )
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)) or clock.reached("connect_tcp.complete"):
        return _Verdict(
            ProbeCause.CONNECTION_DROPPED,
            f"{where} accepted the connection and closed it without an HTTP answer",
            "the gateway (or a proxy/load balancer in front of it) drops the request: check its logs; "
            "OpenCode retries such failures forever",
            str(exc),
        )
    if isinstance(exc, httpx.ConnectError) and os_error is not None and os_error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return _Verdict(ProbeCause.NETWORK_ERROR, f"no route to {where}", "check the VPN and the gateway host in baseURL", str(exc))
    return _Verdict(ProbeCause.NETWORK_ERROR, f"cannot reach {where}: {exc or type(exc).__name__}", "check baseURL and the network path to the gateway", str(exc))


def _timeout_verdict(url: str, where: str, clock: _Clock, deadline: float) -> _Verdict:
    if not clock.reached("connect_tcp.complete"):
        return _Verdict(
            ProbeCause.CONNECT_TIMEOUT,
            f"no TCP connection to {where} within {deadline:g} s (packets dropped: firewall, VPN or a wrong host)",
            "check that the gateway host and port in baseURL are reachable from here (VPN up? firewall?)",
        )
    if clock.reached("start_tls.started") and not clock.reached("start_tls.complete"):
        return _Verdict(
            ProbeCause.TLS_ERROR,
            f"the TLS handshake with {where} did not finish within {deadline:g} s",
            "check that baseURL's scheme matches the port: an https:// URL on a plain-HTTP port hangs like this",
        )
    if not clock.reached("receive_response_headers.complete"):
        return _Verdict(
            ProbeCause.TIMEOUT,
            f"{where} accepted the connection but sent no answer within {deadline:g} s",
            "the gateway is hung or overloaded (OpenCode would wait forever): restart it or check its logs; "
            "a proxy in front of it may be holding the request",
        )
    return _Verdict(
        ProbeCause.TIMEOUT,
        f"{where} sent headers but the body did not finish within {deadline:g} s",
        "the gateway stalls mid-answer: check its logs and its upstream",
    )


def _auth_hint(key_source: str | None) -> str:
    return key_source or "the provider's options.apiKey"


def _status_verdict(response: httpx.Response, body: str, url: str, base_url: str, auth_sent: bool, key_source: str | None) -> _Verdict:
    code = response.status_code
    excerpt = _excerpt(body)
    if code == 401:
        if not auth_sent:
            return _Verdict(
                ProbeCause.UNAUTHORIZED,
                "the gateway wants a key (401) and none is sent",
                f"set {_auth_hint(key_source)}: OpenCode sends no Authorization header without it",
                excerpt,
                code,
            )
        return _Verdict(ProbeCause.UNAUTHORIZED, "the gateway rejects the key (401)", f"the key in {_auth_hint(key_source)} is wrong or expired: replace it", excerpt, code)
    if code == 403:
        return _Verdict(
            ProbeCause.FORBIDDEN,
            "the gateway refuses this key (403): it is valid but not allowed here",
            "ask the gateway's owner to grant the key access to the models (or use the key meant for this gateway)",
            excerpt,
            code,
        )
    if code == 404:
        fix = "baseURL must be the API root that serves /models and /chat/completions"
        if not base_url.rstrip("/").endswith("/v1"):
            fix = f"set baseURL to {base_url.rstrip('/')}/v1 (OpenAI-compatible gateways serve under /v1)"
        return _Verdict(ProbeCause.NOT_FOUND, f"{url} is not found (404): wrong base path", fix, excerpt, code)
    if code == 429:
        retry = response.headers.get("retry-after")
        wait = f" (Retry-After: {retry})" if retry else ""
        return _Verdict(
            ProbeCause.RATE_LIMITED,
            f"the gateway rate-limits this key (429){wait}",
            "wait and retry, or raise the key's quota; OpenCode retries 429 silently, so runs look hung meanwhile",
            excerpt,
            code,
        )
    if code >= 500:
        return _Verdict(
            ProbeCause.SERVER_ERROR,
            f"the gateway fails with {code} {response.reason_phrase}",
            "the gateway or its upstream is broken: check its logs; OpenCode retries 5xx forever, so runs would hang",
            excerpt,
            code,
        )
    return _Verdict(ProbeCause.UNEXPECTED_STATUS, f"unexpected answer {code} {response.reason_phrase} from {url}", "check baseURL: it should be the gateway's OpenAI-compatible API root", excerpt, code)


def _excerpt(body: str) -> str:
    flat = " ".join(body.split())
    return flat[:_EXCERPT_CHARS] + ("…" if len(flat) > _EXCERPT_CHARS else "")


def _not_json(url: str, response: httpx.Response, body: str) -> _Verdict:
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    looks_html = "html" in kind or body.lstrip()[:15].lower().startswith(("<!doctype", "<html"))
    summary = f"{url} answers {kind}, not JSON" + (": an HTML page (a proxy's login page?)" if looks_html else "")
    return _Verdict(
        ProbeCause.NOT_JSON,
        summary,
        "baseURL points at a web page, not the API: use the gateway's API root (…/v1), or sign in to / bypass the proxy "
        "(NO_PROXY) that serves this page",
        _excerpt(body),
        response.status_code,
    )


def _model_ids(payload: Any) -> list[str]:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"] for m in data):
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
        raise _Verdict(ProbeCause.INVALID_URL, f"baseURL {url!r} has an invalid port", "fix the port in baseURL") from None
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
            except _Verdict as verdict:
                if verdict.cause is ProbeCause.NOT_FOUND and not base_url.rstrip("/").endswith("/v1"):
                    await _confirm_v1(verdict, target)
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
    except _Verdict as verdict:
        if verdict.cause is ProbeCause.RATE_LIMITED:
            retry_after = verdict.summary.partition("Retry-After: ")[2].rstrip(")") or None
        return _models_result(url, verdict, clock, auth_sent, redact, retry_after)
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


def _models_result(url: str, verdict: _Verdict, clock: _Clock, auth_sent: bool, redact: Redactor, retry_after: str | None = None) -> ModelsProbe:
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
        verdict.fix = (f"baseURL must be the API root that serves /models and /chat/completions; "
                       f"{candidate}/models is not found either: ask the gateway's owner for its API root")


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
            f"{url} answers JSON that is not an OpenAI model list (expected {{\"data\": [{{\"id\": …}}]}})",
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
    state: dict[str, Any] = {"chunks": 0, "done": False, "usage": None, "text": [], "first_token_ms": None}
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
    )


async def _stream_chat(target: _Target, url: str, body: dict[str, Any], timeout: float, state: dict[str, Any]) -> _Verdict:
    clock = target.clock
    try:
        async with target.client(timeout) as client:
            clock.restart()
            headers = target.request_headers("text/event-stream")
            async with client.stream("POST", url, json=body, headers=headers, extensions={"trace": clock.trace}) as response:
                if response.status_code != 200:
                    text = await _read_body(response, 64 * 1024)
                    if response.status_code == 404 and "model" in text.lower():
                        return _Verdict(
                            ProbeCause.MODEL_NOT_SERVED,
                            f"the gateway does not serve {body['model']} (404)",
                            "declare in opencode.json only models that the gateway's /models lists",
                            _excerpt(text),
                            404,
                        )
                    raise _status_verdict(response, text, url, target.base_url, bool(target.api_key), target.key_source)
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
            return _Verdict(ProbeCause.MALFORMED_STREAM, f"SSE line {line_no} is longer than {_MAX_SSE_LINE} bytes", "check the gateway's streaming output", "", 200)
        if not line or line.startswith(":") or line.startswith(("event:", "id:", "retry:")):
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
            return _Verdict(ProbeCause.MALFORMED_STREAM, f"SSE line {line_no} is not a chunk object", "fix the gateway's streaming output", _excerpt(payload), 200)
        if isinstance(chunk.get("error"), dict):
            message = str(chunk["error"].get("message") or chunk["error"])
            return _Verdict(ProbeCause.SERVER_ERROR, f"the gateway streamed an error: {message[:200]}", "check the gateway's logs and its upstream", "", 200)
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
