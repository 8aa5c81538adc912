"""The ``opencode serve`` side of a delegation: which server an attempt runs on, and the attempt itself.

A delegation on the serve transport holds one :class:`ServeLease` for its whole life: the
first attempt acquires a server (a managed one from the shared pool of this event loop, or the
attached server the user named) and every later attempt of the delegation reuses it. Managed
servers are shared by every delegation of the loop that runs in the same working directory
(with the same environment and OpenCode binary), refcounted, and ended when the last one lets
go; they run under the lifeline, so no server outlives nexus, even after ``kill -9``.
An attached server (``--attach URL``) is never ended.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from nexus_core.errors import NexusError
from nexus_core.opencode.attempt import AttemptResult, AttemptSpec, check_model_name, child_env, find_opencode
from nexus_core.opencode.events import AttemptFinished, AttemptStarted, FailureClass, Outcome, RunEvent
from nexus_core.opencode.serve.client import ServeClient
from nexus_core.opencode.serve.server import ServerHandle, ServerPool
from nexus_core.opencode.serve.session import PermissionAsk, ServeAttempt

__all__ = [
    "PERMISSIONS",
    "ServeLease",
    "Transport",
    "check_permissions",
    "serve_attempt",
    "session_model",
    "shared_pool",
]

Transport = Literal["serve", "run"]

# OpenCode's permission names (1.2.15 and 1.18); ``all`` answers every question.
PERMISSIONS = frozenset(
    {
        "all",
        "bash",
        "edit",
        "read",
        "glob",
        "grep",
        "list",
        "task",
        "webfetch",
        "websearch",
        "codesearch",
        "lsp",
        "skill",
        "todowrite",
        "todoread",
        "external_directory",
        "doom_loop",
        "question",
    }
)

_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], ServerPool]] = (
    weakref.WeakKeyDictionary()
)


def check_permissions(names: Collection[str]) -> frozenset[str]:
    """``names`` as a set, or a :class:`NexusError` naming the first one OpenCode does not know."""
    for name in names:
        if name not in PERMISSIONS:
            known = ", ".join(sorted(PERMISSIONS - {"all"}))
            raise NexusError(f"{name!r} is not an OpenCode permission", f"Use one of {known}, or all")
    return frozenset(names)


def shared_pool(env: Mapping[str, str] | None = None, opencode: str | None = None) -> ServerPool:
    """The server pool of the running event loop for this environment and OpenCode binary."""
    loop = asyncio.get_running_loop()
    pools = _POOLS.setdefault(loop, {})
    key = (tuple(sorted(env.items())) if env is not None else None, opencode)
    pool = pools.get(key)
    if pool is None:
        pool = pools[key] = ServerPool(env=env, opencode=opencode)
    return pool


class ServeLease:
    """One delegation's hold on a server: acquired by the first attempt, released by :meth:`aclose`."""

    def __init__(
        self,
        workdir: Path | None,
        *,
        env: Mapping[str, str] | None = None,
        opencode: str | None = None,
        attach: ServerHandle | None = None,
        pool: ServerPool | None = None,
    ) -> None:
        self.workdir = Path(workdir or os.getcwd())
        self.env = env
        self.opencode = opencode
        self.attach = attach
        self.pool = pool
        self._server: ServerHandle | None = None
        self._client: ServeClient | None = None

    @classmethod
    def of(
        cls,
        workdir: Path | None,
        *,
        env: Mapping[str, str] | None = None,
        opencode: str | None = None,
        attach_url: str | None = None,
        attach_password: str | None = None,
        pool: ServerPool | None = None,
    ) -> ServeLease:
        """A lease on the attached server at ``attach_url``, or on the pool's server for ``workdir``."""
        attach = ServerHandle(attach_url, attach_password) if attach_url else None
        return cls(workdir, env=env, opencode=opencode, attach=attach, pool=pool)

    @property
    def live(self) -> bool:
        """Whether the lease holds a server that is running."""
        return self._server is not None and self._server.alive

    @property
    def server_pid(self) -> int | None:
        """The pid of the managed server the lease holds (None: none, or an attached one)."""
        return getattr(self._server, "pid", None) if self.live else None

    async def client(self) -> ServeClient:
        """A client of the live server (a managed server that died is started again)."""
        if self._client is not None and self._server is not None and self._server.alive:
            return self._client
        await self.aclose()
        if self.attach is not None:
            self._server = self.attach
        else:
            self.pool = self.pool or shared_pool(self.env, self.opencode)
            self._server = await self.pool.acquire(self.workdir)
        self._client = ServeClient(self._server)
        return self._client

    async def aclose(self) -> None:
        """Let go of the server (a managed one ends with its last user; an attached one never)."""
        client, server = self._client, self._server
        self._client = self._server = None
        if client is not None:
            await client.__aexit__(None, None, None)
        if server is not None and server is not self.attach and self.pool is not None:
            await self.pool.release(server)  # type: ignore[arg-type]


def _failed_start(spec: AttemptSpec, number: int, exc: NexusError, env: Mapping[str, str] | None) -> AttemptResult:
    """An attempt that never got a server, classified like the same failure of ``opencode run``."""
    message = exc.message
    lowered = message.lower()
    if "not found on path" in lowered or find_opencode(child_env(env)) is None:
        failure = FailureClass.OPENCODE_NOT_FOUND
    elif "config" in lowered and ("invalid" in lowered or "not valid" in lowered):
        failure = FailureClass.CONFIG_INVALID
    else:
        failure = FailureClass.FAILED
    return AttemptResult(
        attempt=number,
        cli_model_name=spec.cli_model_name,
        model_id=spec.model_id,
        outcome=Outcome(failure=failure, message=message, fix=exc.fix),
    )


async def serve_attempt(
    lease: ServeLease,
    spec: AttemptSpec,
    *,
    number: int,
    approve: Collection[str] = (),
    session_id: str | None = None,
    started: list[ServeAttempt] | None = None,
    ask: PermissionAsk | None = None,
) -> AsyncIterator[RunEvent | AttemptResult | Any]:
    """One attempt's events on the lease's server, then its :class:`AttemptResult` (with ``session_id``).

    ``started`` receives the :class:`ServeAttempt` once it exists, so the caller can cancel it;
    ``ask`` answers the permission questions ``approve`` does not cover (see :class:`ServeAttempt`).
    """
    check_model_name(spec.cli_model_name)
    try:
        client = await lease.client()
    except NexusError as exc:
        result = _failed_start(spec, number, exc, spec.env)
        yield AttemptStarted(attempt=number, model_id=spec.model_id, cli_model_name=spec.cli_model_name)
        yield AttemptFinished(attempt=number, cli_model_name=spec.cli_model_name, outcome=result.outcome)
        yield result
        return
    attempt = ServeAttempt(client, spec, attempt=number, approve=approve, session_id=session_id, ask=ask)
    if started is not None:
        started.append(attempt)
    async for event in attempt.events():
        yield event
    assert attempt.result is not None
    yield attempt.result


async def session_model(client: ServeClient, session_id: str) -> str:
    """The ``provider/model`` a session last used (its latest message that names one)."""
    import httpx  # the HTTP stack loads only on the serve transport (see serve.server.http_client)

    try:
        messages = await client.messages(session_id)
    except httpx.HTTPError as exc:
        status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
        raise NexusError(
            f"OpenCode knows no session {session_id!r} here" + (f" (HTTP {status})" if status else f" ({exc})"),
            "Pass a session id from an earlier result (session_id) with the same --dir",
        ) from None
    for message in reversed(messages):
        info = message.get("info") if isinstance(message, dict) else None
        if not isinstance(info, dict):
            continue
        model = info.get("model")
        if not isinstance(model, dict):
            model = info
        provider, model_id = model.get("providerID"), model.get("modelID")
        if isinstance(provider, str) and isinstance(model_id, str) and provider and model_id:
            return f"{provider}/{model_id}"
    raise NexusError(f"the session {session_id!r} names no model yet", "Pass --model with the follow-up")
