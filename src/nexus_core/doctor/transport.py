"""The network side of a probe: per-phase clock, proxies and trusted roots as OpenCode has them,
DNS, and what a transport failure or a timeout means."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx

from nexus_core.doctor.verdicts import PhaseTimings, ProbeCause, _Verdict

__all__: list[str] = []


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
    sources = tuple(
        (name, env.get(name) or "", _mtime(env.get(name)))
        for name in ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "SSL_CERT_DIR")
    )
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


def _classify_transport(
    exc: httpx.TransportError, url: str, host: str, port: int, clock: _Clock, deadline: float
) -> _Verdict:
    """Turn an httpx transport failure into a named cause with its fix."""
    where = f"{host}:{port}"
    chain = _root_causes(exc)
    ssl_error = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
    os_error = next((e for e in chain if isinstance(e, OSError) and e.errno is not None), None)
    text = " ".join(str(e) for e in chain).lower()
    if ssl_error is not None or "ssl" in text or "certificate" in text:
        reason = str(ssl_error or exc)
        if (
            "wrong_version_number" in reason.lower()
            or "record layer" in reason.lower()
            or "packet length too long" in reason.lower()
        ):
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
    if (
        (os_error is not None and os_error.errno == errno.ECONNREFUSED)
        or "connection refused" in text
        or "connect call failed" in text
    ):
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
    if (
        isinstance(exc, httpx.ConnectError)
        and os_error is not None
        and os_error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
    ):
        return _Verdict(
            ProbeCause.NETWORK_ERROR, f"no route to {where}", "check the VPN and the gateway host in baseURL", str(exc)
        )
    return _Verdict(
        ProbeCause.NETWORK_ERROR,
        f"cannot reach {where}: {exc or type(exc).__name__}",
        "check baseURL and the network path to the gateway",
        str(exc),
    )


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
