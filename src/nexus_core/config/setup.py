"""Add the nexus-agents MCP entry to an OpenCode config file, keeping the user's formatting.

The file is edited through json-five's round-trip model (``json5.loader.ModelLoader`` /
``json5.dumper.ModelDumper``): every comment, trailing comma, key order and indentation
outside the added entry comes back byte for byte. The file is first parsed with OpenCode's
own dialect (:mod:`nexus_core.config.jsonc`), so a file OpenCode would reject is reported with its
``file:line:col`` and left alone.

Writing is atomic (a temporary file in the same directory, then a rename) and keeps the
file's permissions; the previous content is kept as ``<file>.bak``.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from json5.dumper import ModelDumper, dumps
from json5.loader import ModelLoader, loads
from json5.model import Comment, DoubleQuotedString, JSONObject, JSONText, Key, String
from pydantic import BaseModel, ConfigDict

from nexus_core.config import jsonc
from nexus_core.config.loader import SCHEMA_URL, ConfigError, global_config_dir
from nexus_core.errors import NexusError
from nexus_core.secrets import Redactor, secret_values

__all__ = [
    "SERVER_NAME",
    "Scope",
    "SetupResult",
    "apply_entry",
    "desired_entry",
    "resolve_target",
    "run_setup",
    "server_command",
]

SERVER_NAME = "nexus-agents"
# Keys of the user's entry that a forced replacement keeps: the ones OpenCode's strict
# local-server schema (``McpLocal``) allows besides those setup writes. Any other key (a
# remote server's ``url`` or ``headers``) would make OpenCode reject the whole config.
_KEPT_ON_FORCE = ("environment", "timeout")
Scope = Literal["project", "global", "config", "env"]
Action = Literal["added", "replaced", "unchanged"]
_DEFAULT_INDENT = "  "


class SetupResult(BaseModel):
    """What ``setup`` did (or, with ``dry_run``, would do) to one config file."""

    model_config = ConfigDict(frozen=True)

    file: str
    scope: Scope
    action: Action
    dry_run: bool
    created: bool
    backup: str | None
    command: list[str]
    diff: str

    def sentence(self) -> str:
        """One line saying what happened."""
        if self.action == "unchanged":
            return f"{SERVER_NAME} is already configured in {self.file}; nothing written."
        verb = {"added": "Added", "replaced": "Replaced"}[self.action]
        if self.dry_run:
            return f"Dry run: would write {self.file} ({verb.lower()} mcp.{SERVER_NAME}); nothing written."
        kept = f"; the previous file is kept as {self.backup}" if self.backup else ""
        return f"{verb} mcp.{SERVER_NAME} in {self.file}{kept}. Check it with `opencode mcp list`."


def server_command() -> list[str]:
    """This installation's server command, with absolute paths so OpenCode finds our Python.

    The ``nexus-agents`` script installed beside the running interpreter when there is one,
    else the interpreter itself with ``-m nexus_core``.
    """
    python = os.path.abspath(sys.executable)  # not resolved: a venv's python is a symlink
    script = Path(python).parent / SERVER_NAME
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), "--mode=server"]
    return [python, "-m", "nexus_core", "--mode=server"]


def desired_entry(command: list[str] | None = None) -> dict[str, Any]:
    """The ``mcp.nexus-agents`` value setup writes."""
    return {"type": "local", "command": command or server_command(), "enabled": True}


def resolve_target(
    scope: Literal["project", "global"] | None,
    config_path: str | os.PathLike[str] | None,
    directory: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Path, Scope]:
    """The file to edit.

    ``--config PATH`` names it; ``--global`` is ``$XDG_CONFIG_HOME/opencode``; ``--project``
    is the project directory. Without a flag, ``OPENCODE_CONFIG`` when set, else the project.
    In a directory, ``opencode.jsonc`` wins over ``opencode.json``; with neither,
    ``opencode.json`` is created.
    """
    env = os.environ if env is None else env
    if config_path is not None:
        return Path(config_path).expanduser().absolute(), "config"
    if scope is None and env.get("OPENCODE_CONFIG"):
        return Path(env["OPENCODE_CONFIG"]).expanduser().absolute(), "env"
    folder = global_config_dir(env) if scope == "global" else Path(directory or os.getcwd()).absolute()
    for name in ("opencode.jsonc", "opencode.json"):
        if (folder / name).is_file():
            return folder / name, scope or "project"
    return folder / "opencode.json", scope or "project"


# ---------------------------------------------------------------- model editing


def _key_name(key: Key) -> str | None:
    return key.characters if isinstance(key, String) else getattr(key, "name", None)


def _find(obj: JSONObject, name: str) -> int | None:
    """Index of the last pair named ``name`` (the one a JSON parser keeps)."""
    found = None
    for index, key in enumerate(obj.keys):
        if _key_name(key) == name:
            found = index
    return found


def _last_whitespace(wsc: list[str | Comment]) -> str:
    return wsc[-1] if wsc and isinstance(wsc[-1], str) else ""


def _line_indent(whitespace: str) -> str | None:
    """The indentation after the last newline of ``whitespace``, or None when on one line."""
    if "\n" not in whitespace:
        return None
    return whitespace.rsplit("\n", 1)[1]


def _render(value: Any, indent: str, unit: str | None) -> str:
    """JSON text for ``value`` in the file's style: objects one key a line (``unit`` None: all on
    one line), arrays of scalars inline."""
    if isinstance(value, dict) and value and unit is not None:
        inner = indent + unit
        lines = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_render(v, inner, unit)}" for k, v in value.items()]
        return "{\n" + ",\n".join(lines) + "\n" + indent + "}"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _value_node(value: Any, indent: str, unit: str | None) -> Any:
    # json-five types a parsed value as Node; the model lists hold the same objects typed as Value.
    return loads(_render(value, indent, unit), loader=ModelLoader()).value


def _closing_whitespace(obj: JSONObject) -> list[str | Comment]:
    """The whitespace and comments between the last member and ``}`` (a live list)."""
    if not obj.keys:
        return obj.leading_wsc
    if obj.trailing_comma is not None:
        return obj.trailing_comma.wsc_after
    return obj.values[-1].wsc_after


def _child_indent(obj: JSONObject) -> str | None:
    """The indentation of the object's first key (None when it shares a line with ``{``)."""
    if not obj.keys:
        return None
    first = obj.leading_wsc if obj.leading_wsc else obj.keys[0].wsc_before
    return _line_indent(_last_whitespace(first))


def _append(obj: JSONObject, name: str, value: Any, own_indent: str, unit: str) -> None:
    """Add ``"name": value`` as the object's last member, in the object's own layout.

    A multi-line object gets a new line at its keys' indentation; an empty one becomes
    multi-line at ``own_indent`` + ``unit``; a one-line object stays on one line.
    """
    tail = _closing_whitespace(obj)
    final = _last_whitespace(tail)
    head = tail[:-1] if final else list(tail)
    closing = _line_indent(final)
    child = _child_indent(obj)
    if not obj.keys:
        closing = own_indent if closing is None else closing
        child = closing + unit
    key = DoubleQuotedString(name, raw_value=json.dumps(name, ensure_ascii=False))
    if closing is None or child is None:
        key.wsc_before = [*head, " "]
        node = _value_node(value, "", None)
        after: list[str | Comment] = [final] if final else []
    else:
        before_newline = final[: final.rfind("\n")] if "\n" in final else final.rstrip(" \t")
        key.wsc_before = [*head, before_newline + "\n" + child]
        node = _value_node(value, child, unit)
        after = ["\n" + closing]
    node.wsc_before = [" "]
    tail.clear()
    obj.keys.append(key)
    obj.values.append(node)
    if obj.trailing_comma is not None:
        obj.trailing_comma.wsc_before = []
        obj.trailing_comma.wsc_after = after
    else:
        node.wsc_after = after


def _key_indent(obj: JSONObject, index: int) -> str | None:
    """The indentation of the line the ``index``-th key starts (None when it follows other text)."""
    before = obj.leading_wsc if index == 0 and obj.leading_wsc else obj.keys[index].wsc_before
    return _line_indent(_last_whitespace(before))


def _replace(obj: JSONObject, index: int, value: Any, unit: str) -> None:
    old = obj.values[index]
    indent = _key_indent(obj, index)
    node = _value_node(value, indent or "", unit if indent is not None else None)
    node.wsc_before = old.wsc_before
    node.wsc_after = old.wsc_after
    obj.values[index] = node


def _same_entry(existing: Any, wanted: dict[str, Any]) -> bool:
    """Whether an existing entry already runs this installation (extra keys such as a timeout are the user's)."""
    return isinstance(existing, dict) and all(existing.get(k) == v for k, v in wanted.items())


def apply_entry(
    text: str, source: str, entry: dict[str, Any], *, force: bool = False, opencode_version: str | None = None
) -> tuple[str, Action]:
    """Return ``text`` with ``mcp.nexus-agents`` set to ``entry``, and what changed.

    Raises :class:`ConfigError` (with line and column) for a file OpenCode could not parse,
    and :class:`NexusError` when the file holds a different entry and ``force`` is false.
    """
    crlf = "\r\n" in text and text.count("\n") == text.count("\r\n")
    if crlf:  # edit with \n, give every line its \r\n back
        edited, done = apply_entry(
            text.replace("\r\n", "\n"), source, entry, force=force, opencode_version=opencode_version
        )
        return (text, done) if done == "unchanged" else (edited.replace("\n", "\r\n"), done)
    if text.startswith("\ufeff") and (bom_error := jsonc.bom_error(opencode_version)) is not None:
        raise ConfigError(source, bom_error.reason, bom_error.line, bom_error.column)
    body = text[1:] if text.startswith("\ufeff") else text
    bom = text[: len(text) - len(body)]
    if not body.strip():
        return bom + _render({"$schema": SCHEMA_URL, "mcp": {SERVER_NAME: entry}}, "", _DEFAULT_INDENT) + "\n", "added"
    try:
        data = jsonc.loads(body)
    except jsonc.JsoncError as exc:
        raise ConfigError(source, exc.reason, exc.line, exc.column) from None
    if not isinstance(data, dict):
        raise ConfigError(source, "the config must be a JSON object")
    mcp = data.get("mcp")
    if mcp is not None and not isinstance(mcp, dict):
        raise ConfigError(source, '"mcp" must be an object of MCP servers')
    existing = (mcp or {}).get(SERVER_NAME)
    if existing is not None and _same_entry(existing, entry):
        return text, "unchanged"
    if existing is not None and not force:
        raise NexusError(
            f"{source} already has a different mcp.{SERVER_NAME} entry ({_describe_entry(existing)})",
            "Run setup again with --force to replace it, or edit the file",
        )
    model: JSONText = loads(body, loader=ModelLoader())
    root = model.value
    if not isinstance(root, JSONObject):
        raise ConfigError(source, "the config must be a JSON object")
    unit = _child_indent(root) or _DEFAULT_INDENT
    mcp_index = _find(root, "mcp")
    if mcp_index is None:
        _append(root, "mcp", {SERVER_NAME: entry}, "", unit)
        action: Action = "added"
    else:
        mcp_node = root.values[mcp_index]
        assert isinstance(mcp_node, JSONObject)  # checked on the parsed data above
        entry_index = _find(mcp_node, SERVER_NAME)
        if entry_index is None:
            _append(mcp_node, SERVER_NAME, entry, _key_indent(root, mcp_index) or "", unit)
            action = "added"
        else:
            # The user's own keys (a timeout, an environment) survive a forced replacement.
            kept = {k: existing[k] for k in _KEPT_ON_FORCE if k in existing} if isinstance(existing, dict) else {}
            _replace(mcp_node, entry_index, {**kept, **entry}, unit)
            action = "replaced"
    return bom + dumps(model, dumper=cast(Any, ModelDumper())), action


def _describe_entry(existing: Any) -> str:
    """What the entry runs, without its environment or headers (they may hold keys)."""
    if not isinstance(existing, dict):
        return f"a {type(existing).__name__} instead of a server object"
    redact = Redactor.from_env(extra=secret_values(existing))
    kind = existing.get("type", "no type")
    if isinstance(existing.get("command"), list):
        return redact(f"{kind}: {' '.join(str(part) for part in existing['command'])}"[:200])
    if isinstance(existing.get("url"), str):
        return redact(f"{kind}: {existing['url']}"[:200])
    return f"{kind}"


# ---------------------------------------------------------------- files


def _diff(before: str, after: str, path: Path) -> str:
    try:
        secrets = secret_values(jsonc.loads(before)) if before.strip() else []
    except jsonc.JsoncError:
        secrets = []
    redact = Redactor.from_env(extra=secrets)
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"{path} (before)", f"{path} (after)"
    )
    return "".join(redact(line) if line.endswith("\n") else redact(line) + "\n" for line in lines)


def _write_atomically(path: Path, text: str, mode: int, backup: Path | None) -> None:
    """Write ``text`` to a temporary file beside ``path``, copy the old file to ``backup``, rename.

    On any failure the temporary file and a backup made here are removed: nothing is left behind.
    """
    temporary: str | None = None
    backed_up = False
    try:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, newline=""
        ) as handle:
            temporary = handle.name
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        if backup is not None:
            shutil.copy2(path, backup)
            backed_up = True
        os.replace(temporary, path)
    except BaseException:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        if backed_up and backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink()
        raise


def run_setup(
    scope: Literal["project", "global"] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    force: bool = False,
    command: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    opencode_version: str | None = None,
) -> SetupResult:
    """Add (or with ``force`` replace) ``mcp.nexus-agents`` in the chosen OpenCode config file.

    Nothing is written when the entry is already there, with ``dry_run``, or on any error.
    """
    target, resolved_scope = resolve_target(scope, config_path, directory, env)
    real = target.resolve()  # edit what a symlink points at, keep the link
    shown = str(target)
    if real.is_dir():
        raise NexusError(f"{shown} is a directory, not a config file", "Name the file, e.g. --config ./opencode.json")
    created = not real.exists()
    try:
        before = "" if created else real.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NexusError(
            f"cannot read {shown} ({getattr(exc, 'strerror', None) or exc})", "Check the file and its permissions"
        ) from None
    entry = desired_entry(command)
    after, action = apply_entry(before, shown, entry, force=force, opencode_version=opencode_version)
    diff = _diff(before, after, target) if action != "unchanged" else ""
    backup: Path | None = None
    if action != "unchanged" and not dry_run:
        if not real.parent.is_dir():
            if resolved_scope != "global":
                raise NexusError(
                    f"the directory of {shown} does not exist", "Create it first, or name another file with --config"
                )
            try:
                real.parent.mkdir(parents=True)
            except OSError as exc:
                raise NexusError(
                    f"cannot create {real.parent} ({exc.strerror})",
                    "Create the directory, or pick another file with --config",
                ) from None
        if not created:
            _refuse_read_only(real, shown)
        mode = stat.S_IMODE(real.stat().st_mode) if not created else 0o666 & ~_umask()
        backup = None if created else _free_backup(real)
        try:
            _write_atomically(real, after, mode, backup)
        except OSError as exc:
            raise NexusError(
                f"cannot write {shown} ({exc.strerror or exc})",
                "Check the directory's permissions; nothing was changed",
            ) from None
    return SetupResult(
        file=shown,
        scope=resolved_scope,
        action=action,
        dry_run=dry_run,
        created=created,
        backup=str(backup) if backup else None,
        command=entry["command"],
        diff=diff,
    )


def _refuse_read_only(path: Path, shown: str) -> None:
    """Refuse a file its mode bits do not let this user write, even as root (who the OS would let)."""
    st = path.stat()
    uid = os.geteuid()
    if uid == st.st_uid:
        bit = stat.S_IWUSR
    elif st.st_gid in {os.getegid(), *os.getgroups()}:
        bit = stat.S_IWGRP
    else:
        bit = stat.S_IWOTH
    if not st.st_mode & bit or (uid != 0 and not os.access(path, os.W_OK)):
        raise NexusError(
            f"{shown} is read-only for you (mode {stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}); nothing was changed",
            "Make it writable (chmod u+w) or name another file with --config",
        )


def _free_backup(path: Path) -> Path:
    """``<file>.bak``, or the first free ``<file>.bak.N`` so an older backup is never overwritten."""
    backup = path.with_name(path.name + ".bak")
    number = 0
    while backup.exists() or backup.is_symlink():
        number += 1
        backup = path.with_name(f"{path.name}.bak.{number}")
    return backup


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
