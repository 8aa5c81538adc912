"""Live reload: watch every config location and publish a new routing snapshot when one changes.

The watcher follows every file OpenCode would read (:func:`~nexus_core.config.loader.candidate_paths`)
and every registry overlay (:func:`~nexus_core.routing.registry.overlay_paths`). Files may not exist
yet, so it watches, without recursion, the nearest existing directory of each, and re-arms
itself when a directory on the way appears or disappears. That covers editors' atomic saves
(a temp file renamed over the target), deletion and re-creation, and OpenCode itself
rewriting a file to add ``$schema`` (which changes nothing, so nothing is published).

On a change, after a short debounce, it rebuilds the snapshot off the event loop. A broken
file (syntax, validation, an unreadable overlay) keeps the last good snapshot and publishes
the error with its ``file:line:col``; the next good save publishes the new snapshot. Cool-downs
and known gateway model lists carry over from one snapshot to the next.

Use it as ``async with ConfigWatcher(project_dir) as watcher:`` and either iterate
``watcher.updates()`` (from a Textual worker or the MCP server) or ``watcher.subscribe(callback)``.
``stop()`` ends every iterator, and leaves no thread or task behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles
from pydantic import BaseModel, ConfigDict

from nexus_core.config.loader import ConfigError, candidate_paths
from nexus_core.routing.registry import overlay_paths
from nexus_core.routing.snapshot import RoutingSnapshot, build_snapshot

__all__ = ["ConfigWatcher", "GatewayChange", "SnapshotDiff", "SnapshotUpdate", "diff_snapshots"]

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_SIZE = 64
# watchfiles.watch yields an empty set when this passes with no change: the first yield tells
# that the watcher is armed (events from then on are seen), later ones let the loop check
# whether the set of directories to watch changed. It returns within a step of the stop event.
_ARM_TIMEOUT_MS = 250


class GatewayChange(BaseModel):
    """A provider whose ``options.baseURL`` changed (None: the provider or its URL is absent)."""

    model_config = ConfigDict(frozen=True)
    provider: str
    before: str | None
    after: str | None


class SnapshotDiff(BaseModel):
    """What changed between two snapshots. Model ids are sorted."""

    model_config = ConfigDict(frozen=True)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    gateways: tuple[GatewayChange, ...] = ()
    config_changed: bool = False
    availability_changed: bool = False

    @property
    def is_empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.changed
            or self.gateways
            or self.config_changed
            or self.availability_changed
        )

    def summary(self) -> str:
        """One line for a toast or a log, e.g. ``+1 model (x); gateway custom changed``."""
        parts: list[str] = []
        for label, ids in (("+", self.added), ("-", self.removed), ("~", self.changed)):
            if ids:
                parts.append(f"{label}{len(ids)} model{'s' if len(ids) > 1 else ''} ({', '.join(ids)})")
        parts += [f"gateway {g.provider}: {g.before or '(none)'} → {g.after or '(none)'}" for g in self.gateways]
        if not parts and self.config_changed:
            parts.append("config changed")
        if self.availability_changed:
            parts.append("availability changed")
        return "; ".join(parts) or "no change"


def diff_snapshots(before: RoutingSnapshot | None, after: RoutingSnapshot) -> SnapshotDiff:
    """The models added, removed and changed, and the gateways whose base URL changed."""
    old = {m.id: m for m in before.registry.models} if before else {}
    new = {m.id: m for m in after.registry.models}
    old_urls = before.base_urls if before else {}
    new_urls = after.base_urls
    gateways = tuple(
        GatewayChange(provider=pid, before=old_urls.get(pid), after=new_urls.get(pid))
        for pid in sorted(set(old_urls) | set(new_urls))
        if old_urls.get(pid) != new_urls.get(pid)
    )
    return SnapshotDiff(
        added=tuple(sorted(set(new) - set(old))),
        removed=tuple(sorted(set(old) - set(new))),
        changed=tuple(sorted(i for i in set(old) & set(new) if old[i] != new[i])),
        gateways=gateways,
        config_changed=before is None or before.config.data != after.config.data,
        availability_changed=before is not None
        and (
            before.gateway_models != after.gateway_models
            or before.cooldowns != after.cooldowns
            or before.opencode_path != after.opencode_path
        ),
    )


@dataclass(frozen=True)
class SnapshotUpdate:
    """One event for subscribers.

    ``snapshot`` is the snapshot in force (the last good one when ``error`` is set; None only
    while no config has ever loaded). ``recovered`` is True for the first good snapshot after
    an error. ``paths`` are the files whose change caused it.
    """

    snapshot: RoutingSnapshot | None
    diff: SnapshotDiff
    error: ConfigError | None = None
    recovered: bool = False
    paths: tuple[str, ...] = ()
    generation: int = 0


@dataclass
class _Subscriber:
    queue: asyncio.Queue[SnapshotUpdate | None] = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE_SIZE))


def _nearest_existing_dir(path: Path) -> Path:
    current = path
    while not current.is_dir():
        if current.parent == current:
            return current
        current = current.parent
    return current


def _overlay_error(snapshot: RoutingSnapshot) -> ConfigError | None:
    """A whole overlay file that could not be used (syntax, shape) counts as a broken file."""
    for problem in snapshot.registry.problems:
        if problem.entry != "*":
            continue
        path, line, column = problem.source, None, None
        head, sep, tail = problem.source.rpartition(":")
        head2, sep2, mid = head.rpartition(":")
        if sep and sep2 and tail.isdigit() and mid.isdigit():
            path, line, column = head2, int(mid), int(tail)
        return ConfigError(path, problem.reason, line, column)
    return None


class ConfigWatcher:
    """Watches the config files of ``project_dir`` and publishes :class:`SnapshotUpdate`\\ s."""

    def __init__(
        self,
        project_dir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        debounce_ms: int = 200,
        step_ms: int = 30,
        clock: Callable[[], float] = time.monotonic,
        force_polling: bool = False,
    ) -> None:
        self._directory = str(Path(project_dir or os.getcwd()).resolve())
        self._env = dict(os.environ if env is None else env)
        self._debounce_ms = debounce_ms
        self._step_ms = step_ms
        self._clock = clock
        self._force_polling = force_polling
        self._snapshot: RoutingSnapshot | None = None
        self._error: ConfigError | None = None
        self._subscribers: list[_Subscriber] = []
        self._callbacks: list[Callable[[SnapshotUpdate], None]] = []
        self._stop_flag = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._watch_pool: ThreadPoolExecutor | None = None
        self._build_pool: ThreadPoolExecutor | None = None
        self._generation = 0
        self.reloads = 0
        """How many times the watcher rebuilt (or tried to rebuild) the snapshot; for tests and benches."""

    # ------------------------------------------------------------ state

    @property
    def snapshot(self) -> RoutingSnapshot | None:
        """The snapshot in force: the last one that loaded without error."""
        return self._snapshot

    @property
    def error(self) -> ConfigError | None:
        """The error of the last reload, or None when the files in force are good."""
        return self._error

    @property
    def directory(self) -> str:
        return self._directory

    def watched_files(self) -> list[Path]:
        """Every config and overlay file followed, existing or not."""
        files = [*candidate_paths(self._directory, self._env), *overlay_paths(self._directory, self._env)]
        return list(dict.fromkeys(files))

    def _link_targets(self) -> list[Path]:
        """Where the followed files that are symlinks (a dotfiles repository) point."""
        return [f.resolve() for f in self.watched_files() if f.is_symlink()]

    def watched_dirs(self) -> tuple[str, ...]:
        """The existing directories watched (without recursion) to see those files and their link targets."""
        files = [*self.watched_files(), *self._link_targets()]
        return tuple(sorted({str(_nearest_existing_dir(f.parent)) for f in files}))

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ConfigWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> RoutingSnapshot | None:
        """Load the first snapshot and start watching. Returns the snapshot (None if the config is broken)."""
        if self._task is not None:
            return self._snapshot
        self._stop_flag.clear()
        self._watch_pool = ThreadPoolExecutor(1, thread_name_prefix="nexus-config-watch")
        self._build_pool = ThreadPoolExecutor(1, thread_name_prefix="nexus-config-build")
        loop = asyncio.get_running_loop()
        # Arm the watch before the first load so a save in between is never missed.
        armed = asyncio.Event()
        self._task = loop.create_task(self._run(armed), name="nexus-config-watcher")
        await armed.wait()
        await self._reload(())
        return self._snapshot

    async def stop(self) -> None:
        """Stop watching, end every ``updates()`` iterator, and release the threads."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop_flag.set()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("the config watcher stopped on an error")
        for pool in (self._watch_pool, self._build_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._watch_pool = self._build_pool = None
        for sub in self._subscribers:
            self._offer(sub, None)

    # ------------------------------------------------------------ subscribing

    def updates(self) -> AsyncIterator[SnapshotUpdate]:
        """Every update from this call until :meth:`stop`, as an async iterator.

        The subscription starts at once, before the first ``await``, so nothing published after
        this call is missed. A slow reader loses the oldest queued updates beyond
        :data:`SUBSCRIBER_QUEUE_SIZE` (each carries the whole snapshot in force).
        """
        sub = _Subscriber()
        self._subscribers.append(sub)
        if self._task is None:
            sub.queue.put_nowait(None)
        return self._drain(sub)

    async def _drain(self, sub: _Subscriber) -> AsyncIterator[SnapshotUpdate]:
        try:
            while True:
                update = await sub.queue.get()
                if update is None:
                    return
                yield update
        finally:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(sub)

    def subscribe(self, callback: Callable[[SnapshotUpdate], None]) -> Callable[[], None]:
        """Call ``callback`` (on the event loop) for every update; returns a function that unsubscribes."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def _offer(self, sub: _Subscriber, update: SnapshotUpdate | None) -> None:
        if sub.queue.full():
            sub.queue.get_nowait()
        sub.queue.put_nowait(update)

    def _publish(self, update: SnapshotUpdate) -> None:
        for sub in list(self._subscribers):
            self._offer(sub, update)
        for callback in list(self._callbacks):
            try:
                callback(update)
            except Exception:
                log.exception("a config watcher callback failed")

    # ------------------------------------------------------------ availability

    def note_rate_limit(self, model_id: str, seconds: float | None = None) -> None:
        """Cool ``model_id`` down (it just hit a rate limit); later snapshots keep the cool-down."""
        if self._snapshot is not None:
            self._replace(self._snapshot.with_cooldown(model_id, seconds))

    def note_gateway_models(self, provider_id: str, model_ids: Iterable[str] | None) -> None:
        """Record what the provider's gateway ``/v1/models`` lists (None: not known)."""
        if self._snapshot is not None:
            self._replace(self._snapshot.with_gateway_models(provider_id, model_ids))

    def _replace(self, snapshot: RoutingSnapshot) -> None:
        before, self._snapshot = self._snapshot, snapshot
        self._generation += 1
        self._publish(SnapshotUpdate(snapshot, diff_snapshots(before, snapshot), generation=self._generation))

    # ------------------------------------------------------------ the loop

    def _build(self) -> RoutingSnapshot:
        current = self._snapshot
        snapshot = build_snapshot(
            self._directory,
            self._env,
            gateway_models=current.gateway_models if current else None,
            cooldowns=current.cooldowns if current else None,
            clock=self._clock,
        )
        broken = _overlay_error(snapshot)
        if broken is not None:
            raise broken
        return snapshot

    async def _reload(self, paths: tuple[str, ...]) -> None:
        loop = asyncio.get_running_loop()
        try:
            snapshot = await loop.run_in_executor(self._build_pool, self._build)
        except ConfigError as exc:
            error: ConfigError | None = exc
        except Exception as exc:  # an unforeseen failure must not end the watcher
            error = ConfigError(
                paths[0] if paths else self._directory, f"cannot be loaded ({type(exc).__name__}: {exc})"
            )
        else:
            error = None
        self.reloads += 1
        if error is not None:
            same = self._error is not None and str(self._error) == str(error)
            self._error = error
            if not same:
                self._generation += 1
                self._publish(
                    SnapshotUpdate(self._snapshot, SnapshotDiff(), error, paths=paths, generation=self._generation)
                )
            return
        before = self._snapshot
        recovered = self._error is not None
        diff = diff_snapshots(before, snapshot)
        self._error = None
        if before is not None and diff.is_empty and not recovered:
            return
        self._snapshot = snapshot
        self._generation += 1
        self._publish(SnapshotUpdate(snapshot, diff, None, recovered, paths, self._generation))

    def _relevant(self, changes: set[tuple[watchfiles.Change, str]]) -> tuple[str, ...]:
        files = self.watched_files()
        interesting = {str(f) for f in [*files, *self._link_targets()]}
        for f in files:
            interesting.update(str(p) for p in f.parents)
        return tuple(sorted({path for _, path in changes if path in interesting}))

    async def _run(self, armed: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        pending: tuple[str, ...] = ()
        failures = 0
        try:
            while not self._stop_flag.is_set():
                dirs = self.watched_dirs()
                changes = watchfiles.watch(
                    *dirs,
                    watch_filter=None,
                    debounce=self._debounce_ms,
                    step=self._step_ms,
                    stop_event=self._stop_flag,
                    rust_timeout=_ARM_TIMEOUT_MS,
                    yield_on_timeout=True,
                    raise_interrupt=False,
                    force_polling=self._force_polling,
                    poll_delay_ms=50,
                    recursive=False,
                    ignore_permission_denied=True,
                )
                try:
                    while not self._stop_flag.is_set():
                        try:
                            raw = await loop.run_in_executor(self._watch_pool, next, changes, None)
                        except FileNotFoundError:
                            # A directory vanished between listing and watching it: list again, briefly backing off.
                            failures += 1
                            await asyncio.sleep(min(0.5, 0.01 * failures))
                            break
                        if raw is None:
                            break  # the generator ended: the stop event is set
                        failures = 0
                        if not armed.is_set():
                            armed.set()
                        if pending:
                            await self._reload(pending)
                            pending = ()
                        paths = self._relevant(raw) if raw else ()
                        if not paths:
                            continue
                        if self.watched_dirs() != dirs:
                            pending = paths  # re-arm on the new directories first, then reload
                            break
                        await self._reload(paths)
                finally:
                    await loop.run_in_executor(self._watch_pool, changes.close)
        finally:
            armed.set()
