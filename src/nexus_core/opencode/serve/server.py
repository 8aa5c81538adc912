"""A managed ``opencode serve`` process, and a pool of them (one per working directory).

The native binary is started (never the npm node launcher: killing that leaves the server
running) in its own process group, with a random ``OPENCODE_SERVER_PASSWORD`` (HTTP basic auth,
user ``opencode``; both 1.2.15 and 1.18 honour it). On Linux the child gets
``PR_SET_PDEATHSIG=SIGKILL``; it is spawned from the thread that runs the event loop, which must
live as long as the server (pdeathsig fires when the *thread* that forked exits). Readiness is
the ``opencode server listening on http://…`` line on stdout; stdout and stderr are drained for
the server's whole life into a bounded tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus_core.errors import NexusError
from nexus_core.opencode import lifeline
from nexus_core.opencode.argv import child_env
from nexus_core.opencode.locate import find_opencode, npm_release

if TYPE_CHECKING:
    import httpx

__all__ = ["READY_TIMEOUT_S", "ManagedServer", "ServerHandle", "ServerPool", "http_client"]

READY_TIMEOUT_S = 60.0
WARM_UP_TIMEOUT_S = 30.0
# 1.2.15 loads its providers with the directory's bootstrap, on the first request whatever it is: a
# warm-up only adds a request there (0.07 s). Releases after 1.2 (1.18.33 measured), and installs
# whose release is not known, get one.
LAZY_CATALOG_SINCE = (1, 3, 0)
TAIL_LINES = 200
_LISTENING = re.compile(r"listening on (?P<url>http://[^\s]+)")


def http_client(url: str, auth: tuple[str, str] | None, timeout_s: float) -> httpx.AsyncClient:
    """An HTTP client of the server at ``url``.

    For a plain-http URL (a managed server is one, on 127.0.0.1) no CA bundle is loaded, which
    costs tens of milliseconds per client: the context it gets instead has no CA at all, so
    were TLS ever reached through it, verification would fail rather than be skipped.
    """
    import ssl

    import httpx  # here, not at the top: a CLI run starts its server before loading the HTTP stack

    verify: ssl.SSLContext | bool = True
    if url.startswith("http://"):
        verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return httpx.AsyncClient(base_url=url, auth=auth, timeout=timeout_s, verify=verify)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerHandle:
    """Where a server is reached: its base URL and its basic-auth password (None: no auth)."""

    def __init__(self, url: str, password: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.password = password

    @property
    def auth(self) -> tuple[str, str] | None:
        """``(user, password)`` for httpx, or None."""
        return ("opencode", self.password) if self.password else None

    @property
    def alive(self) -> bool:
        """An attached server is assumed alive; its requests tell otherwise."""
        return True

    async def aclose(self) -> None:
        """An attached server is never ended."""


class ManagedServer(ServerHandle):
    """One ``opencode serve`` this process started and ends. Use ``await ManagedServer.start(...)``."""

    def __init__(self, workdir: Path, env: dict[str, str], opencode: str) -> None:
        super().__init__("", secrets.token_urlsafe(24))
        self.workdir = workdir
        self.env = env
        self.opencode = opencode
        self.proc: asyncio.subprocess.Process | None = None
        self._lifeline: lifeline.Lifeline | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._drains: list[asyncio.Task[None]] = []
        self._ready: asyncio.Future[str] | None = None

    @classmethod
    async def start(
        cls,
        workdir: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        opencode: str | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> ManagedServer:
        """Start the server for ``workdir`` and wait (at most ``ready_timeout_s``) until it listens."""
        path = Path(workdir)
        if not path.is_dir():
            raise NexusError(f"the working directory {path} does not exist", "Pass an existing directory")
        full = child_env(env)
        binary = opencode or find_opencode(full)
        if binary is None:
            raise NexusError("OpenCode (opencode) was not found on PATH", "Install it or set NEXUS_OPENCODE")
        # The server runs in ``workdir``: a relative binary path must not be resolved there.
        server = cls(path, full, os.path.abspath(binary) if os.sep in binary else binary)
        try:
            await server._launch(ready_timeout_s)
        except BaseException:
            await server.aclose()
            raise
        return server

    async def _launch(self, ready_timeout_s: float) -> None:
        self.env["OPENCODE_SERVER_PASSWORD"] = self.password or ""
        try:
            self.proc = await self._spawn()
        except OSError as exc:
            raise NexusError(
                f"opencode serve could not be started ({exc.strerror or exc})", "Install OpenCode or set NEXUS_OPENCODE"
            ) from exc
        self._ready = asyncio.get_running_loop().create_future()
        assert self.proc.stdout and self.proc.stderr
        self._drains = [
            asyncio.create_task(self._drain(self.proc.stdout)),
            asyncio.create_task(self._drain(self.proc.stderr)),
        ]
        exited: asyncio.Future[Any] = asyncio.ensure_future(self.proc.wait())
        try:
            done, _ = await asyncio.wait({self._ready, exited}, timeout=ready_timeout_s, return_when="FIRST_COMPLETED")
        finally:
            exited.cancel()
        if self._ready in done:
            self.url = self._ready.result().rstrip("/")
            release = npm_release(self.opencode)
            if release is None or release >= LAZY_CATALOG_SINCE:
                await self._warm_up()
            return
        last = self.tail[-1] if self.tail else "no output"
        if exited in done:
            raise NexusError(f"opencode serve exited with code {self.proc.returncode}: {last}", "Run nexus doctor")
        raise NexusError(f"opencode serve did not listen within {ready_timeout_s:g} s ({last})", "Run nexus doctor")

    async def _warm_up(self) -> None:
        """Load the providers before the first prompt.

        OpenCode 1.18.33 loads its provider catalog on the first request that needs it: during a
        first prompt that is a silent second and more (1.3-1.5 s here) between the prompt's first
        event and its text, which a short stall timeout counts as a stall and which holds the first
        deltas back. ``/config/providers`` loads the catalog (1.5 s) and answers with the configured
        providers only, a few KB. ``/provider``, used until 2026-12-04, answers with the whole
        catalog, 2 MB on 1.2.15 and 6 MB on 1.18.33, which took 1.18.33 1.5-2 s more to write at
        every start. A failure here is the first prompt's to report. Not done for 1.2 (see
        :data:`LAZY_CATALOG_SINCE`).
        """
        import httpx

        with contextlib.suppress(httpx.HTTPError):
            async with http_client(self.url, self.auth, WARM_UP_TIMEOUT_S) as client:
                await client.get("/config/providers")

    async def _spawn(self) -> asyncio.subprocess.Process:
        # Through a lifeline: the server's whole group ends when nexus ends, however it ends.
        self._lifeline = await lifeline.spawn(
            [self.opencode, "serve", "--hostname", "127.0.0.1", "--port", str(_free_port())],
            cwd=self.workdir,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert isinstance(self._lifeline.process, asyncio.subprocess.Process)  # spawn, not popen
        return self._lifeline.process

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()[:2000]
            self.tail.append(text)
            match = _LISTENING.search(text)
            if match and self._ready is not None and not self._ready.done():
                self._ready.set_result(match.group("url"))

    @property
    def pid(self) -> int | None:
        """The server's pid (its process-group leader)."""
        return self._lifeline.child_pid if self._lifeline and self.proc else None

    @property
    def alive(self) -> bool:
        """Whether the server process is still running."""
        return self.proc is not None and self.proc.returncode is None

    async def aclose(self) -> None:
        """End the server's whole tree (SIGTERM, grace, SIGKILL). Idempotent."""
        if self._lifeline is not None:
            await lifeline.end_tree(self._lifeline, 3.0)
        for task in self._drains:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._drains, return_exceptions=True)
        self._drains = []


class ServerPool:
    """One shared :class:`ManagedServer` per working directory, refcounted; attached URLs are never ended."""

    def __init__(self, *, env: Mapping[str, str] | None = None, opencode: str | None = None) -> None:
        self._env = env
        self._opencode = opencode
        self._servers: dict[Path, tuple[ManagedServer, int]] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, workdir: str | os.PathLike[str]) -> ManagedServer:
        """The live server for ``workdir``, started when there is none (or it died)."""
        key = Path(workdir).resolve()
        async with self._lock:
            entry = self._servers.get(key)
            if entry and entry[0].alive:
                self._servers[key] = (entry[0], entry[1] + 1)
                return entry[0]
            if entry:
                await entry[0].aclose()
            server = await ManagedServer.start(key, env=self._env, opencode=self._opencode)
            self._servers[key] = (server, 1)
            return server

    async def release(self, server: ManagedServer) -> None:
        """Drop one reference; the server ends with the last one."""
        async with self._lock:
            for key, (known, count) in list(self._servers.items()):
                if known is server:
                    if count <= 1:
                        del self._servers[key]
                        await server.aclose()
                    else:
                        self._servers[key] = (known, count - 1)
                    return

    @staticmethod
    def attach(url: str, password: str | None = None) -> ServerHandle:
        """A handle on a server someone else runs; closing it does nothing."""
        return ServerHandle(url, password)

    async def aclose(self) -> None:
        """End every server of the pool."""
        async with self._lock:
            servers = [s for s, _ in self._servers.values()]
            self._servers.clear()
        for server in servers:
            await server.aclose()
