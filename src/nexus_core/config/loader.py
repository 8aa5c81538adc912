"""Find, parse, merge and resolve the OpenCode configuration exactly as OpenCode 1.2.15 does.

Order, lowest precedence first (``Config.state`` in OpenCode's ``config/config.ts``):

1. global: ``$XDG_CONFIG_HOME/opencode/`` ``config.json``, ``opencode.json``, ``opencode.jsonc``;
2. the file named by ``OPENCODE_CONFIG``;
3. project files found walking up from the working directory to the git worktree root
   (``/`` outside git): every ``opencode.jsonc`` outermost first, then every
   ``opencode.json`` outermost first, so inner directories win;
4. ``opencode.jsonc`` and ``opencode.json`` in each ``.opencode`` directory walking up from
   the working directory (inner first, so the outer one wins, as OpenCode does), then
   ``~/.opencode``, then ``OPENCODE_CONFIG_DIR``;
5. ``OPENCODE_CONFIG_CONTENT``;
6. the managed directory (``/etc/opencode``) last of all.

Objects merge deeply; any other value (arrays included) replaces, except the top-level
``plugin`` and ``instructions`` lists, which are concatenated without duplicates.
``{env:VAR}`` is substituted in the raw text before parsing (unset gives ``""``) and
``{file:path}`` by the file's trimmed content, relative to the config file's directory.
Every leaf value remembers the layer it came from.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from nexus_core.config import jsonc
from nexus_core.errors import NexusError, first_validation_problem
from nexus_core.secrets import secret_values

__all__ = [
    "ConfigError",
    "ConfigLayer",
    "EnvRef",
    "LayerKind",
    "MergedConfig",
    "ProviderConfig",
    "candidate_paths",
    "config_secrets",
    "git_worktree",
    "global_config_dir",
    "load_config",
]

SCHEMA_URL = "https://opencode.ai/config.json"
_ENV_RE = re.compile(r"\{env:([^}]+)\}")
_FILE_RE = re.compile(r"\{file:[^}]+\}")

LayerKind = Literal["global", "custom", "project", "directory", "inline", "managed"]
KeyPath = tuple[str, ...]


class ConfigError(NexusError):
    """A config file that cannot be used: its path, the position when known, and why."""

    def __init__(self, path: str, message: str, line: int | None = None, column: int | None = None) -> None:
        self.path = path
        self.line = line
        self.column = column
        super().__init__(message, "Fix the file and save it again")
        # NexusError trims a final full stop; the message is kept as given (tests and the TUI show it).
        self.message = message

    @property
    def location(self) -> str:
        """``file:line:col`` (or just the file when no position is known)."""
        if self.line is None:
            return self.path
        return f"{self.path}:{self.line}:{self.column}"

    def sentence(self) -> str:
        """One line for the user: where, what, and what to do."""
        return f"{self.location}: {self.message}. Fix the file and save it again."


class EnvRef(BaseModel):
    """One ``{env:VAR}`` reference in a config layer and whether it resolved."""

    model_config = ConfigDict(frozen=True)

    var: str
    is_set: bool
    source: str


class ConfigLayer(BaseModel):
    """One loaded config source: a file, or the inline ``OPENCODE_CONFIG_CONTENT``."""

    model_config = ConfigDict(frozen=True)

    source: str
    kind: LayerKind
    env_refs: tuple[EnvRef, ...] = ()


class ModelLimit(BaseModel):
    model_config = ConfigDict(extra="allow")
    context: int | None = None
    output: int | None = None


class ModelEntry(BaseModel):
    """A model declared under ``provider.<id>.models.<key>``."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    name: str | None = None
    limit: ModelLimit | None = None
    cost: dict[str, Any] | None = None


class ProviderConfig(BaseModel):
    """The parts of ``provider.<id>`` nexus reads; everything else is kept as is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    npm: str | None = None
    name: str | None = None
    options: dict[str, Any] = {}
    models: dict[str, ModelEntry] = {}

    @property
    def base_url(self) -> str | None:
        value = self.options.get("baseURL")
        return value if isinstance(value, str) else None


class MergedConfig(BaseModel):
    """The resolved config, where each value came from, and what was substituted."""

    model_config = ConfigDict(frozen=True)

    data: dict[str, Any]
    layers: tuple[ConfigLayer, ...]
    origins: dict[KeyPath, str]
    templates: dict[KeyPath, str]
    directory: str
    worktree: str

    def origin(self, *keys: str) -> str | None:
        """The source of the value at ``keys`` (a leaf, or the last layer that touched a subtree)."""
        path = tuple(keys)
        if path in self.origins:
            return self.origins[path]
        found = [src for p, src in self.origins.items() if p[: len(path)] == path]
        return found[-1] if found else None

    def template(self, *keys: str) -> str | None:
        """The raw text of a string value before substitution, e.g. ``{env:CUSTOM_API_KEY}``."""
        return self.templates.get(tuple(keys))

    def env_var_of(self, *keys: str) -> str | None:
        """The variable a value was taken from, when it is exactly ``{env:VAR}``."""
        raw = self.template(*keys)
        match = _ENV_RE.fullmatch(raw or "")
        return match.group(1) if match else None

    @property
    def env_refs(self) -> tuple[EnvRef, ...]:
        return tuple(ref for layer in self.layers for ref in layer.env_refs)

    @property
    def providers(self) -> dict[str, ProviderConfig]:
        """Each provider of the merged config, validated for the fields nexus reads."""
        raw = self.data.get("provider") or {}
        return {pid: ProviderConfig.model_validate(value) for pid, value in raw.items()}

    def leaves(self) -> Iterator[tuple[KeyPath, Any]]:
        """Every leaf (non-object) value with its key path, in document order."""
        yield from _leaves(self.data, ())


def _leaves(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, Any]]:
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from _leaves(sub, (*path, key))
    else:
        yield path, value


# ---------------------------------------------------------------- locations


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("OPENCODE_TEST_HOME") or env.get("HOME") or os.path.expanduser("~"))


def global_config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/opencode`` (``~/.config/opencode`` when unset)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or os.path.expanduser("~")) / ".config")
    return Path(base) / "opencode"


def managed_config_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("OPENCODE_TEST_MANAGED_CONFIG_DIR") or "/etc/opencode")


def git_worktree(directory: Path) -> Path:
    """The directory OpenCode stops its upward search at: the git worktree root, or ``/``."""
    current = directory
    while True:
        dotgit = current / ".git"
        if dotgit.exists():
            if dotgit.is_file():
                # A linked worktree: OpenCode takes the parent of the common git dir.
                try:
                    text = dotgit.read_text().strip()
                    gitdir = Path(text.removeprefix("gitdir:").strip())
                    gitdir = gitdir if gitdir.is_absolute() else (current / gitdir).resolve()
                    common = (gitdir / "commondir").read_text().strip()
                    common_dir = (gitdir / common).resolve()
                    return common_dir.parent
                except OSError:
                    return current
            return current
        if current.parent == current:
            return Path("/")
        current = current.parent


def _walk_up(start: Path, stop: Path) -> Iterator[Path]:
    current = start
    while True:
        yield current
        if current == stop or current.parent == current:
            return
        current = current.parent


def _truthy(env: Mapping[str, str], name: str) -> bool:
    return (env.get(name) or "").lower() in {"1", "true"}


def _sources(directory: Path, env: Mapping[str, str], *, existing_only: bool) -> list[tuple[Path, LayerKind]]:
    worktree = git_worktree(directory)
    out: list[tuple[Path, LayerKind]] = []
    gdir = global_config_dir(env)
    out += [(gdir / name, "global") for name in ("config.json", "opencode.json", "opencode.jsonc")]
    if env.get("OPENCODE_CONFIG"):
        out.append((Path(env["OPENCODE_CONFIG"]).expanduser(), "custom"))
    project_config = not _truthy(env, "OPENCODE_DISABLE_PROJECT_CONFIG")
    if project_config:
        for name in ("opencode.jsonc", "opencode.json"):
            found = [d / name for d in _walk_up(directory, worktree)]
            out += [(p, "project") for p in reversed(found)]
    # OpenCode's ``ConfigPaths.directories``: the global dir first, then every ``.opencode``
    # walking up, ``~/.opencode``, then ``OPENCODE_CONFIG_DIR``; deduplicated by their text, so
    # an OPENCODE_CONFIG_DIR naming an earlier entry is read at that entry's place. Only
    # ``.opencode`` dirs and the OPENCODE_CONFIG_DIR entry give config files.
    config_dir = env.get("OPENCODE_CONFIG_DIR") or None
    dirs: list[str] = [str(gdir)]
    if project_config:
        dirs += [str(d / ".opencode") for d in _walk_up(directory, worktree)]
    dirs.append(str(_home(env) / ".opencode"))
    if config_dir:
        dirs.append(config_dir)
    for d in dict.fromkeys(dirs):
        if not (d.endswith(".opencode") or d == config_dir):
            continue
        if existing_only and not os.path.isdir(d):
            if os.path.exists(d):
                raise ConfigError(
                    d,
                    "is a file where OpenCode expects a config directory (OpenCode fails on it too); rename or remove it",
                )
            continue
        out += [(Path(d) / name, "directory") for name in ("opencode.jsonc", "opencode.json")]
    managed = managed_config_dir(env)
    out += [(managed / name, "managed") for name in ("opencode.jsonc", "opencode.json")]
    if existing_only:
        # Anything there but a file (a directory named opencode.json) fails OpenCode too: keep it to report.
        out = [(p, kind) for p, kind in out if p.exists()]
    return out


def candidate_paths(
    directory: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> list[Path]:
    """Every file OpenCode would read, existing or not (what a watcher must follow)."""
    env = os.environ if env is None else env
    start = Path(directory or os.getcwd()).resolve()
    return [p for p, _ in _sources(start, env, existing_only=False)]


# ---------------------------------------------------------------- parsing


def _substitute(text: str, source: str, base_dir: Path, env: Mapping[str, str]) -> tuple[str, tuple[EnvRef, ...]]:
    refs: list[EnvRef] = []

    def env_sub(match: re.Match[str]) -> str:
        value = env.get(match.group(1)) or ""
        refs.append(EnvRef(var=match.group(1), is_set=bool(value), source=source))
        return value

    text = _ENV_RE.sub(env_sub, text)
    out: list[str] = []
    cursor = 0
    for match in _FILE_RE.finditer(text):
        token, index = match.group(0), match.start()
        out.append(text[cursor:index])
        cursor = match.end()
        line_start = text.rfind("\n", 0, index) + 1
        if text[line_start:index].lstrip().startswith("//"):
            out.append(token)
            continue
        raw_path = token[len("{file:") : -1]
        if raw_path.startswith("~/"):
            raw_path = str(_home(env) / raw_path[2:])
        target = Path(raw_path) if os.path.isabs(raw_path) else base_dir / raw_path
        try:
            content = target.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(source, f'bad file reference "{token}": {target} does not exist') from None
        except OSError as exc:
            raise ConfigError(source, f'bad file reference "{token}": {exc.strerror}') from None
        out.append(json.dumps(content)[1:-1])
    out.append(text[cursor:])
    return "".join(out), tuple(refs)


def _parse_layer(
    text: str, source: str, base_dir: Path, env: Mapping[str, str], opencode_version: str | None = None
) -> tuple[dict[str, Any], tuple[EnvRef, ...], dict[KeyPath, str]]:
    if not text:
        return {}, (), {}
    if text.startswith("\ufeff"):
        bom = jsonc.bom_error(opencode_version)
        if bom is not None:
            raise ConfigError(source, bom.reason, bom.line, bom.column)
        text = text[1:]
        if not text:
            return {}, (), {}
    # Syntax errors are reported against the file as written, so line:col match the editor.
    try:
        raw = jsonc.loads(text)
    except jsonc.JsoncError as exc:
        if not _ENV_RE.search(text):
            raise ConfigError(source, exc.reason, exc.line, exc.column) from None
        raw = None  # {env:…} used outside a string; only the substituted text can tell
    substituted, refs = _substitute(text, source, base_dir, env)
    try:
        data = jsonc.loads(substituted)
    except jsonc.JsoncError as exc:
        raise ConfigError(
            source, f"{exc.reason} (after substituting {{env:…}}/{{file:…}})", exc.line, exc.column
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(source, "the config must be a JSON object")
    templates: dict[KeyPath, str] = {}
    if isinstance(raw, dict):
        for path, value in _leaves(raw, ()):
            if isinstance(value, str) and ("{env:" in value or "{file:" in value):
                templates[path] = value
    return data, refs, templates


def _merge(
    target: dict[str, Any], source: dict[str, Any], label: str, origins: dict[KeyPath, str], path: KeyPath = ()
) -> dict[str, Any]:
    """remeda's ``mergeDeep``, recording the origin of every value ``source`` sets."""
    out = dict(target)
    for key, value in source.items():
        here = (*path, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, label, origins, here)
            continue
        previous = out.get(key)
        if isinstance(previous, dict):
            for stale in [leaf for leaf, _ in _leaves(previous, here)]:
                origins.pop(stale, None)
        out[key] = value
        if isinstance(value, dict) and value:
            for leaf, _ in _leaves(value, here):
                origins[leaf] = label
        else:
            origins[here] = label
    return out


def _merge_layer(
    result: dict[str, Any], data: dict[str, Any], label: str, origins: dict[KeyPath, str]
) -> dict[str, Any]:
    merged = _merge(result, data, label, origins)
    for key in ("plugin", "instructions"):
        if isinstance(result.get(key), list) and isinstance(data.get(key), list):
            merged[key] = list(dict.fromkeys([*result[key], *data[key]]))
    return merged


def _validate(data: dict[str, Any], source: str) -> None:
    providers = data.get("provider")
    if providers is None:
        return
    if not isinstance(providers, dict):
        raise ConfigError(source, '"provider" must be an object of providers')
    for pid, value in providers.items():
        try:
            ProviderConfig.model_validate(value)
        except ValidationError as exc:
            where, _, what = first_validation_problem(exc, ("provider", pid)).partition(": ")
            raise ConfigError(source, f"{where}: {what.lower()}") from None


def load_config(
    directory: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    opencode_version: str | None = None,
) -> MergedConfig:
    """Load and merge every OpenCode config layer for ``directory`` (default: the cwd).

    ``opencode_version`` judges what differs between releases (a leading byte-order mark is
    an error in 1.2.15, accepted by 1.18.33); None judges as 1.2.15, the pinned release.

    Raises :class:`ConfigError` for the first layer that cannot be read, parsed or validated.
    """
    env = dict(os.environ if env is None else env)
    start = Path(directory or os.getcwd()).resolve()
    result: dict[str, Any] = {}
    origins: dict[KeyPath, str] = {}
    raw_by_layer: dict[KeyPath, tuple[str, str]] = {}
    layers: list[ConfigLayer] = []
    inline_done = False

    def load_inline() -> None:
        # OPENCODE_CONFIG_CONTENT goes after every file but the managed ones.
        nonlocal inline_done
        inline_done = True
        if env.get("OPENCODE_CONFIG_CONTENT"):
            add(env["OPENCODE_CONFIG_CONTENT"], "OPENCODE_CONFIG_CONTENT", "inline", start, False)

    def add(text: str, label: str, kind: LayerKind, base_dir: Path, is_file: bool) -> None:
        nonlocal result
        data, refs, tmpl = _parse_layer(text, label, base_dir, env, opencode_version)
        _validate(data, label)
        if is_file and "$schema" not in data:
            data = {**data, "$schema": SCHEMA_URL}  # OpenCode adds it (and writes it back)
        result = _merge_layer(result, data, label, origins)
        raw_by_layer.update({path: (label, raw) for path, raw in tmpl.items()})
        layers.append(ConfigLayer(source=label, kind=kind, env_refs=refs))

    sources = _sources(start, env, existing_only=True)
    for path, kind in sources:
        if kind == "managed" and not inline_done:
            load_inline()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except IsADirectoryError:
            raise ConfigError(
                str(path),
                "is a directory where OpenCode expects a config file (OpenCode fails on it too); rename or remove it",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), f"cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
        add(text, str(path), kind, path.parent, True)
    if not inline_done:
        load_inline()
    templates = {path: raw for path, (label, raw) in raw_by_layer.items() if origins.get(path) == label}
    return MergedConfig(
        data=result,
        layers=tuple(layers),
        origins=origins,
        templates=templates,
        directory=str(start),
        worktree=str(git_worktree(start)),
    )


def config_secrets(directory: str | os.PathLike[str] | None, env: Mapping[str, str]) -> list[str]:
    """The key values the merged config in ``directory`` resolves to (literal, ``{env:}``, ``{file:}``).

    For redaction: a key written in the file or read from a file is as secret as one in the
    environment. A config that cannot be loaded gives none (OpenCode will not send its keys either).
    """
    try:
        return secret_values(load_config(directory, env).data)
    except (ConfigError, OSError):
        return []
