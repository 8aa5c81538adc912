"""The config watcher: real files, real watchfiles; every wait is an event or a bounded poll."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from conftest import opencode_path, present
from nexus_core.config.watch import ConfigWatcher, SnapshotUpdate

WAIT_S = 10


def _config(*models: str, base_url: str = "http://127.0.0.1:9/v1") -> dict:
    return {
        "provider": {
            "custom": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": base_url},
                "models": {m: {"name": m} for m in models},
            }
        }
    }


def _write(path: Path, data: dict | str) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))


def _rename_over(path: Path, data: dict) -> None:
    """An editor's atomic save: write a temp file beside the target, then rename it over."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


async def _next(updates: AsyncIterator[SnapshotUpdate], accept: Callable[[SnapshotUpdate], bool]) -> SnapshotUpdate:
    async with asyncio.timeout(WAIT_S):
        async for update in updates:
            if accept(update):
                return update
    raise AssertionError("the watcher stopped before the expected update")


async def _poll(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.01)


def _ids(update: SnapshotUpdate) -> set[str]:
    assert update.snapshot is not None
    return {m.id for m in present(update.snapshot).registry.models}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".git").mkdir()  # stop the upward config search here
    _write(project / "opencode.json", _config("alpha"))
    return project


async def test_an_edit_and_a_rename_over_add_models(project: Path, hermetic_env: dict[str, str]) -> None:
    async with ConfigWatcher(project, hermetic_env) as watcher:
        assert "opencode-custom-alpha" in {m.id for m in present(watcher.snapshot).registry.models}
        updates = watcher.updates()
        _write(project / "opencode.json", _config("alpha", "beta"))
        update = await _next(updates, lambda u: "opencode-custom-beta" in u.diff.added)
        assert update.error is None and update.diff.removed == ()
        assert str(project / "opencode.json") in update.paths

        _rename_over(project / "opencode.json", _config("alpha", "beta", "gamma"))
        update = await _next(updates, lambda u: bool(u.diff.added))
        assert update.diff.added == ("opencode-custom-gamma",)
        assert watcher.snapshot is update.snapshot

        _rename_over(project / "opencode.json", _config("alpha", "beta", "gamma", base_url="http://127.0.0.1:8/v1"))
        update = await _next(updates, lambda u: bool(u.diff.gateways))
        assert [(g.provider, g.before, g.after) for g in update.diff.gateways] == [
            ("custom", "http://127.0.0.1:9/v1", "http://127.0.0.1:8/v1")
        ]


async def test_delete_and_recreate(project: Path, hermetic_env: dict[str, str]) -> None:
    async with ConfigWatcher(project, hermetic_env) as watcher:
        updates = watcher.updates()
        (project / "opencode.json").unlink()
        update = await _next(updates, lambda u: bool(u.diff.removed))
        assert update.diff.removed == ("opencode-custom-alpha",)
        _write(project / "opencode.json", _config("alpha", "delta"))
        update = await _next(updates, lambda u: bool(u.diff.added))
        assert set(update.diff.added) == {"opencode-custom-alpha", "opencode-custom-delta"}


async def test_a_symlinked_config_follows_edits_of_its_target(
    project: Path, tmp_path: Path, hermetic_env: dict[str, str]
) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "opencode.json"
    _write(target, _config("linked"))
    global_file = Path(hermetic_env["XDG_CONFIG_HOME"]) / "opencode" / "opencode.json"
    global_file.parent.mkdir(parents=True, exist_ok=True)
    global_file.symlink_to(target)
    async with ConfigWatcher(project, hermetic_env) as watcher:
        updates = watcher.updates()
        _write(target, _config("linked", "relinked"))
        update = await _next(updates, lambda u: bool(u.diff.added))
        assert update.diff.added == ("opencode-custom-relinked",)
        _rename_over(target, _config("relinked"))
        update = await _next(updates, lambda u: bool(u.diff.removed))
        assert update.diff.removed == ("opencode-custom-linked",)


async def test_a_broken_edit_keeps_the_last_good_snapshot_and_a_fix_recovers(
    project: Path, hermetic_env: dict[str, str]
) -> None:
    path = project / "opencode.json"
    async with ConfigWatcher(project, hermetic_env) as watcher:
        good = watcher.snapshot
        updates = watcher.updates()
        _write(path, '{\n  "provider": {\n    "custom": { "models": { "beta": {} } }\n  \n  "model": "x/y"\n}\n')
        update = await _next(updates, lambda u: u.error is not None)
        assert present(update.error).location == f"{path}:5:3"
        assert update.snapshot is good and watcher.snapshot is good and watcher.error is update.error
        assert "opencode-custom-alpha" in _ids(update)

        _rename_over(path, _config("alpha", "beta"))
        update = await _next(updates, lambda u: u.error is None)
        assert update.recovered and update.diff.added == ("opencode-custom-beta",)
        assert watcher.error is None


async def test_a_schema_rewrite_changes_nothing(project: Path, hermetic_env: dict[str, str]) -> None:
    """OpenCode's own rewrite: the first `{` becomes `{ "$schema": …,` — written in place."""
    path = project / "opencode.json"
    published: list[SnapshotUpdate] = []
    async with ConfigWatcher(project, hermetic_env) as watcher:
        watcher.subscribe(published.append)
        before, reloads = watcher.snapshot, watcher.reloads
        path.write_text(path.read_text().replace("{", '{\n  "$schema": "https://opencode.ai/config.json",', 1))
        await _poll(lambda: watcher.reloads > reloads)
        assert published == [] and watcher.snapshot is before and watcher.error is None
        # The watcher still follows the file afterwards.
        _write(path, _config("alpha", "epsilon"))
        await _poll(lambda: bool(published))
        assert published[-1].diff.added == ("opencode-custom-epsilon",)


@pytest.mark.opencode
async def test_the_real_opencode_adding_schema_is_survived(project: Path, hermetic_env: dict[str, str]) -> None:
    path = project / "opencode.json"
    published: list[SnapshotUpdate] = []
    async with ConfigWatcher(project, hermetic_env) as watcher:
        watcher.subscribe(published.append)
        reloads = watcher.reloads
        proc = await asyncio.create_subprocess_exec(
            opencode_path(),
            "debug",
            "config",
            cwd=project,
            env=hermetic_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with asyncio.timeout(60):
            await proc.wait()
        assert '"$schema"' in path.read_text()
        await _poll(lambda: watcher.reloads > reloads)
        assert [u for u in published if u.error is not None] == []
        assert "opencode-custom-alpha" in {m.id for m in present(watcher.snapshot).registry.models}
        _rename_over(path, _config("alpha", "zeta"))
        await _poll(lambda: any("opencode-custom-zeta" in u.diff.added for u in published))


async def test_directories_created_later_are_followed(project: Path, hermetic_env: dict[str, str]) -> None:
    global_dir = Path(hermetic_env["XDG_CONFIG_HOME"]) / "opencode"
    assert not global_dir.exists()
    async with ConfigWatcher(project, hermetic_env) as watcher:
        updates = watcher.updates()
        global_dir.mkdir()
        _write(global_dir / "opencode.json", _config("from-global"))
        update = await _next(updates, lambda u: bool(u.diff.added))
        assert update.diff.added == ("opencode-custom-from-global",)

        overlay = project / ".nexus" / "models.json"
        overlay.parent.mkdir()
        _write(overlay, {"models": {"opencode-custom-alpha": {"aliases": ["first"]}}})
        update = await _next(updates, lambda u: bool(u.diff.changed))
        assert update.diff.changed == ("opencode-custom-alpha",)
        assert present(present(update.snapshot).registry.find("first")).id == "opencode-custom-alpha"

        _write(overlay, '{"models": {\n  "x": nope\n}}')
        update = await _next(updates, lambda u: u.error is not None)
        assert present(update.error).location == f"{overlay}:2:8"
        assert present(update.snapshot).registry.find("first") is not None


async def test_cooldowns_and_gateway_lists_survive_a_reload(project: Path, hermetic_env: dict[str, str]) -> None:
    async with ConfigWatcher(project, hermetic_env) as watcher:
        updates = watcher.updates()
        watcher.note_rate_limit("opencode-custom-alpha", 600)
        update = await _next(updates, lambda u: u.diff.availability_changed)
        watcher.note_gateway_models("custom", ["alpha"])
        await _next(updates, lambda u: u.diff.availability_changed)
        _write(project / "opencode.json", _config("alpha", "beta"))
        update = await _next(updates, lambda u: bool(u.diff.added))
        assert present(update.snapshot).cooling_for("opencode-custom-alpha") > 500
        assert "the gateway does not serve beta" in present(
            present(update.snapshot).unavailable_reason("opencode-custom-beta")
        )


async def test_stop_ends_iterators_and_leaves_no_thread_or_task(project: Path, hermetic_env: dict[str, str]) -> None:
    threads_before = {t.ident for t in threading.enumerate()}
    watcher = ConfigWatcher(project, hermetic_env)
    await watcher.start()
    updates = watcher.updates()
    reader = asyncio.create_task(_collect(updates))
    assert any(t.name.startswith("nexus-config") for t in threading.enumerate())
    await watcher.stop()
    async with asyncio.timeout(WAIT_S):
        assert await reader == []
    assert {t.ident for t in threading.enumerate()} <= threads_before
    assert [t for t in asyncio.all_tasks() if t.get_name() == "nexus-config-watcher"] == []
    assert [u async for u in watcher.updates()] == []  # a stopped watcher ends a new iterator at once


async def test_a_config_broken_from_the_start_reports_and_recovers(project: Path, hermetic_env: dict[str, str]) -> None:
    path = project / "opencode.json"
    _write(path, "{ nope")
    async with ConfigWatcher(project, hermetic_env) as watcher:
        assert watcher.snapshot is None and present(watcher.error).location == f"{path}:1:3"
        updates = watcher.updates()
        _write(path, _config("alpha"))
        update = await _next(updates, lambda u: u.snapshot is not None)
        assert update.recovered and "opencode-custom-alpha" in update.diff.added


async def _collect(updates: AsyncIterator[SnapshotUpdate]) -> list[SnapshotUpdate]:
    return [u async for u in updates]
