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
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, Self

from nexus_core.errors import NexusError
from nexus_core.gateway.faults import Fault, RequestKind
from nexus_core.gateway.http import HOST, GatewayHTTP
from nexus_core.gateway.records import Controls, RecordedRequest, as_fault
from nexus_core.gateway.replies import Script, ToolCall, Turn
from nexus_core.gateway.transcripts import Transcript
from nexus_core.secrets import Redactor

__all__ = ["DEFAULT_MODELS", "DEFAULT_TITLE", "RecordedRequest", "ReferenceGateway"]

DEFAULT_MODELS: tuple[str, ...] = ("claude-opus-4-5", "claude-sonnet-4-5")
DEFAULT_TITLE = "Gateway test session"


class ReferenceGateway(GatewayHTTP):
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
        self._controls = Controls([as_fault(f) for f in faults], record_limit)
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
        return f"http://{HOST}:{self.port}/v1"

    # -- async life cycle ---------------------------------------------------------------

    async def start(self) -> Self:
        """Listen on 127.0.0.1. Raises :class:`NexusError` if the port cannot be bound."""
        try:
            self._server = await asyncio.start_server(self._on_connection, HOST, self._requested_port)
        except OSError as exc:
            raise NexusError(
                f"The reference gateway cannot listen on {HOST}:{self._requested_port} ({exc.strerror or exc})",
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
        parsed = as_fault(fault)
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
