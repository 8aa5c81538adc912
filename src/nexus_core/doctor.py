"""Health checks that tell the truth about the path nexus → OpenCode → gateway → model.

:func:`run_doctor` runs every check concurrently, each with its own time limit, and returns a
:class:`DoctorReport`. A check is ``ok`` only when that step would work on the way to the
model; ``warn`` marks something that works but will bite (or a model the router skips);
``fail`` something that breaks a run; ``skipped`` a check that could not run because an
earlier one failed (or ``--probe`` was not asked for).

Check ids (stable; ``<pid>`` is an OpenCode provider id that routes to a gateway):

* ``opencode`` — OpenCode on PATH and its version (supported: :data:`SUPPORTED_OPENCODE`);
* ``config`` — config files found and parsed, and which file wins for each provider;
* ``provider.<pid>.base_url`` — the provider's ``options.baseURL``;
* ``provider.<pid>.api_key`` — the key (``{env:VAR}`` set or not; OpenCode silently sends no
  ``Authorization`` header when it is unset);
* ``gateway.<pid>`` — ``GET {baseURL}/models`` with the key, timed per phase;
* ``models.<pid>`` — registry CLI model names ↔ opencode.json models ↔ the gateway's list;
* ``registry`` — overlay entries that were skipped, registry models no config provider serves;
* ``mcp`` — the ``nexus-agents`` MCP entry in the OpenCode config;
* with ``probe=True``: ``probe.chat.<pid>`` (a streamed chat completion straight to the
  gateway) and ``probe.opencode_run`` (a real ``opencode run`` smoke through OpenCode).

No key ever appears in a report: every text goes through a :class:`~nexus_core.secrets.Redactor`
that knows each resolved key and every secret-looking environment variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from nexus_core.gateway_probe import (
    CHAT_TIMEOUT_S,
    MODELS_TIMEOUT_S,
    ModelsProbe,
    ProbeCause,
    probe_chat_stream,
    probe_models,
)
from nexus_core.adapter import AttemptSpec, run_attempt, terminate_tree
from nexus_core.errors import NexusError
from nexus_core.events import FailureClass
from nexus_core.opencode_config import ConfigError, MergedConfig, load_config
from nexus_core.registry import ModelProfile, Registry, build_registry, overlay_paths
from nexus_core.secrets import Redactor, is_secret_key

__all__ = [
    "Check",
    "CheckStatus",
    "DoctorReport",
    "SUPPORTED_OPENCODE",
    "TESTED_OPENCODE",
    "opencode_smoke",
    "run_doctor",
]

CheckStatus = Literal["ok", "warn", "fail", "skipped"]
KeyState = Literal["set", "unset", "absent"]

TESTED_OPENCODE = "1.2.15"
SUPPORTED_OPENCODE = ">=1.2.15,<1.3"
_SUPPORTED_MIN = (1, 2, 15)
_SUPPORTED_BELOW = (1, 3, 0)

VERSION_TIMEOUT_S = 3.0
# With the version known from npm's package.json, `--version` only confirms the binary starts,
# and must not hold the report back longer than the gateway verdict.
PACKAGED_VERSION_WAIT_S = MODELS_TIMEOUT_S
SMOKE_TIMEOUT_S = 60.0
MCP_ENTRY = "nexus-agents"
_OPENAI_RESPONSES = "@ai-sdk/openai"
_OPENAI_COMPATIBLE = "@ai-sdk/openai-compatible"
_SMOKE_PROMPT = "Reply with the single word OK."
_STDERR_TAIL = 2000
_ENV_TEMPLATE = re.compile(r"\{env:([^}]+)\}")


class Check(BaseModel):
    """One check's verdict. ``cause`` is a stable machine-readable reason when not ok."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    status: CheckStatus
    summary: str
    detail: str = ""
    fix: str = ""
    cause: str | None = None
    duration_ms: float = 0.0
    data: dict[str, Any] = {}


class DoctorReport(BaseModel):
    """Every check, in a stable order, and the figures the dashboard shows.

    ``ok`` is true when no check failed (warnings allowed); ``gateway_latency_ms`` is the total
    time of the first gateway's ``GET /models`` when it answered, else ``None``.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    project_dir: str
    probe: bool
    ok: bool
    counts: dict[str, int]
    duration_ms: float
    opencode_version: str | None = None
    gateway_latency_ms: float | None = None
    checks: list[Check]

    def get(self, check_id: str) -> Check | None:
        """The check with this id, or None."""
        return next((c for c in self.checks if c.id == check_id), None)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 otherwise (the CLI's exit code)."""
        return 0 if self.ok else 1


# ---------------------------------------------------------------- gateway providers


@dataclass
class _Gateway:
    """One provider that routes to an OpenAI-compatible gateway, with its key resolved."""

    provider_id: str
    base_url: str
    base_url_var: str | None
    base_url_origin: str | None
    key: str | None
    key_state: KeyState
    key_label: str
    key_fix_target: str
    headers: dict[str, str]
    declared: dict[str, str] = field(default_factory=dict)
    declared_in: str | None = None
    npm: str | None = None


def _auth_store(env: Mapping[str, str]) -> dict[str, Any]:
    data_home = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or os.path.expanduser("~")) / ".local" / "share")
    try:
        data = json.loads((Path(data_home) / "opencode" / "auth.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _resolve_key(config: MergedConfig, pid: str, options: dict[str, Any], env: Mapping[str, str]) -> tuple[str | None, KeyState, str, str]:
    """The key OpenCode will send for provider ``pid``: (value, state, where it comes from, what to set).

    OpenCode uses ``options.apiKey`` whenever the option exists, even when ``{env:VAR}`` made it
    empty (then it sends no Authorization header); only without the option does it fall back to
    ``opencode auth login`` (auth.json), then to the provider's ``env`` variables.
    """
    key_path = ("provider", pid, "options", "apiKey")
    origin = config.origin(*key_path)
    if "apiKey" in options:
        value = options.get("apiKey")
        key = value if isinstance(value, str) and value else None
        state: KeyState = "set" if key else "unset"
        var = config.env_var_of(*key_path)
        template = config.template(*key_path) or ""
        if var:
            return key, state, f"{{env:{var}}}", f"the {var} environment variable"
        if template.startswith("{file:"):
            return key, state, f"{template} in {origin}", f"the file {template[6:-1]}"
        return key, state, f"the value written in {origin}", f"provider.{pid}.options.apiKey in {origin}"
    fix_target = f'provider.{pid}.options.apiKey in opencode.json (e.g. "{{env:CUSTOM_API_KEY}}")'
    stored = _auth_store(env).get(pid)
    if isinstance(stored, dict) and stored.get("type") == "api" and stored.get("key"):
        return str(stored["key"]), "set", "`opencode auth login` (auth.json)", fix_target
    env_vars = config.data["provider"][pid].get("env") or []
    from_env = next((v for v in env_vars if isinstance(v, str) and env.get(v)), None)
    if from_env:
        return env[from_env], "set", f"the {from_env} environment variable (provider env)", fix_target
    return None, "absent", "no apiKey configured", fix_target


def _gateways(config: MergedConfig, env: Mapping[str, str]) -> list[_Gateway]:
    """Providers with an ``options.baseURL`` or the openai-compatible SDK, as OpenCode resolves them."""
    out: list[_Gateway] = []
    for pid, provider in config.providers.items():
        if "baseURL" not in provider.options and provider.npm != _OPENAI_COMPATIBLE:
            continue
        raw_url = provider.options.get("baseURL")
        # OpenCode also expands ${VAR} in baseURL when it builds the SDK.
        base_url = re.sub(r"\$\{([^}]+)\}", lambda m: env.get(m.group(1), m.group(0)), raw_url if isinstance(raw_url, str) else "").strip()
        key, state, label, fix_target = _resolve_key(config, pid, provider.options, env)
        headers = provider.options.get("headers")
        out.append(
            _Gateway(
                provider_id=pid,
                base_url=base_url,
                base_url_var=config.env_var_of("provider", pid, "options", "baseURL"),
                base_url_origin=config.origin("provider", pid, "options", "baseURL") or config.origin("provider", pid),
                key=key,
                key_state=state,
                key_label=label,
                key_fix_target=fix_target,
                headers={k: v for k, v in headers.items() if isinstance(v, str)} if isinstance(headers, dict) else {},
                declared={k: (m.id or k) for k, m in provider.models.items()},
                declared_in=config.origin("provider", pid, "models"),
                npm=provider.npm,
            )
        )
    return out


# ---------------------------------------------------------------- timing helpers


class _Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def ms(self) -> float:
        return round((time.perf_counter() - self.start) * 1000, 1)


async def _bounded(check_id: str, title: str, limit: float, make: Callable[[], Awaitable[Check]]) -> Check:
    """Run one check within ``limit`` seconds; overrunning, or crashing, is itself a failed check."""
    timer = _Timer()
    try:
        async with asyncio.timeout(limit):
            return await make()
    except OSError as exc:
        return Check(
            id=check_id, title=title, status="fail", cause="check_error",
            summary=f"the check could not run: {exc.strerror or exc}", fix="see the summary; run the doctor again once it is fixed",
            duration_ms=timer.ms(),
        )
    except TimeoutError:
        return Check(
            id=check_id, title=title, status="fail", cause="check_timeout",
            summary=f"did not finish within {limit:g} s", fix="run `nexus-agents doctor` again; if it persists, see the other checks",
            duration_ms=timer.ms(),
        )


# ---------------------------------------------------------------- OpenCode


def _parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _package_version(opencode: str) -> str | None:
    """The version in the npm package.json beside an ``opencode-ai`` launcher, if it is one."""
    for parent in list(Path(opencode).resolve().parents)[:3]:
        try:
            manifest = json.loads((parent / "package.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and manifest.get("name") == "opencode-ai" and isinstance(manifest.get("version"), str):
            return manifest["version"]
    return None


async def _check_opencode(env: Mapping[str, str], opencode: str | None) -> Check:
    """OpenCode on PATH and its version; ``data["version"]`` holds the version when known."""
    timer = _Timer()
    title = "OpenCode on PATH"
    if opencode is None:
        return Check(
            id="opencode", title=title, status="fail", cause="opencode_missing",
            summary="OpenCode is not on PATH (nexus reports this as \"No model adapter configured\")",
            detail=f"searched PATH={env.get('PATH', '')}",
            fix=f"install it (npm install -g opencode-ai@{TESTED_OPENCODE}) or put it on PATH, then check `which opencode`",
            duration_ms=timer.ms(),
        )
    packaged = _package_version(opencode)
    wait = VERSION_TIMEOUT_S if packaged is None else PACKAGED_VERSION_WAIT_S
    try:
        proc = await asyncio.create_subprocess_exec(
            opencode, "--version", env=dict(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
    except OSError as exc:
        return _cannot_start(opencode, exc, timer)
    try:
        async with asyncio.timeout(wait):
            out, err = await proc.communicate()
    except TimeoutError:
        # Slow is not broken: a busy machine can take this long to start the binary.
        if packaged is not None:
            return _version_verdict(opencode, _parse_version(packaged), timer, f"version from its package.json; `opencode --version` was still starting after {wait:g} s")
        return Check(
            id="opencode", title=title, status="warn", cause="opencode_slow",
            summary=f"OpenCode at {opencode}, but `opencode --version` did not answer within {wait:g} s",
            detail="a busy machine starts OpenCode slowly; a hung one never answers",
            fix="run `opencode --version` by hand: if it hangs, reinstall OpenCode",
            duration_ms=timer.ms(), data={"path": opencode, "version": None, "supported": SUPPORTED_OPENCODE},
        )
    finally:
        await terminate_tree(proc)
    text = out.decode(errors="replace").strip()
    version = _parse_version(text.splitlines()[-1] if text else "")
    if proc.returncode != 0 or version is None:
        return Check(
            id="opencode", title=title, status="fail", cause="opencode_broken",
            summary=f"`{opencode} --version` failed (exit {proc.returncode})",
            detail=(err.decode(errors="replace").strip() or text)[-_STDERR_TAIL:],
            fix=f"reinstall OpenCode (npm install -g opencode-ai@{TESTED_OPENCODE})",
            duration_ms=timer.ms(), data={"path": opencode},
        )
    return _version_verdict(opencode, version, timer, "")


def _cannot_start(opencode: str, exc: OSError, timer: _Timer) -> Check:
    return Check(
        id="opencode", title="OpenCode on PATH", status="fail", cause="opencode_broken",
        summary=f"{opencode} cannot be started ({exc.strerror or exc})",
        fix=f"reinstall OpenCode (npm install -g opencode-ai@{TESTED_OPENCODE})",
        duration_ms=timer.ms(), data={"path": opencode},
    )


def _version_verdict(opencode: str, version: tuple[int, int, int] | None, timer: _Timer, note: str) -> Check:
    title = "OpenCode on PATH"
    if version is None:
        return Check(
            id="opencode", title=title, status="warn", cause="opencode_version_unknown",
            summary=f"OpenCode at {opencode} does not say its version", detail=note,
            fix=f"install the tested version: npm install -g opencode-ai@{TESTED_OPENCODE}",
            duration_ms=timer.ms(), data={"path": opencode, "version": None, "supported": SUPPORTED_OPENCODE},
        )
    shown = ".".join(map(str, version))
    data = {"path": opencode, "version": shown, "supported": SUPPORTED_OPENCODE}
    if not (_SUPPORTED_MIN <= version < _SUPPORTED_BELOW):
        return Check(
            id="opencode", title=title, status="warn", cause="opencode_version_untested",
            summary=f"OpenCode {shown} at {opencode} is outside the supported range {SUPPORTED_OPENCODE}",
            detail="\n".join(x for x in (f"nexus is tested with OpenCode {TESTED_OPENCODE}; event formats may differ", note) if x),
            fix=f"install the tested version: npm install -g opencode-ai@{TESTED_OPENCODE}",
            duration_ms=timer.ms(), data=data,
        )
    return Check(
        id="opencode", title=title, status="ok",
        summary=f"OpenCode {shown} at {opencode} (supported {SUPPORTED_OPENCODE})",
        detail=note, duration_ms=timer.ms(), data=data,
    )


# ---------------------------------------------------------------- config, provider, key


def _check_config(config: MergedConfig, elapsed_ms: float) -> Check:
    layers = [f"{layer.kind:<9} {layer.source}" for layer in config.layers]
    wins = []
    for pid in config.providers:
        parts = [f"provider {pid}: from {config.origin('provider', pid)}"]
        for label, path in (("baseURL", ("options", "baseURL")), ("apiKey", ("options", "apiKey")), ("models", ("models",))):
            source = config.origin("provider", pid, *path)
            if source:
                parts.append(f"{label} from {source}")
        wins.append("; ".join(parts))
    detail = "\n".join(["files (lowest precedence first):", *(f"  {line}" for line in layers or ["(none)"]), *wins])
    data = {"layers": [layer.source for layer in config.layers], "providers": {pid: config.origin("provider", pid) for pid in config.providers}}
    if not config.layers:
        return Check(
            id="config", title="OpenCode config", status="warn", cause="no_config",
            summary=f"no OpenCode config file found for {config.directory}",
            detail=detail, fix="create opencode.json in the project with your gateway provider (see the README's \"Your gateway\")",
            duration_ms=elapsed_ms, data=data,
        )
    names = ", ".join(f"{pid} ({Path(config.origin('provider', pid) or '?').name})" for pid in config.providers) or "no providers"
    return Check(
        id="config", title="OpenCode config", status="ok",
        summary=f"{len(config.layers)} file(s) parsed; {names}",
        detail=detail, duration_ms=elapsed_ms, data=data,
    )


def _check_base_url(gw: _Gateway) -> Check:
    check_id = f"provider.{gw.provider_id}.base_url"
    title = f"{gw.provider_id}: baseURL"
    where = gw.base_url_origin or "the config"
    if not gw.base_url:
        if gw.base_url_var:
            return Check(
                id=check_id, title=title, status="fail", cause="base_url_unset",
                summary=f"baseURL comes from {{env:{gw.base_url_var}}} and {gw.base_url_var} is not set",
                fix=f"export {gw.base_url_var}=https://your-gateway.example.com/v1",
                data={"source": where},
            )
        return Check(
            id=check_id, title=title, status="fail", cause="base_url_missing",
            summary=f"provider {gw.provider_id} has no options.baseURL",
            fix=f"set provider.{gw.provider_id}.options.baseURL in {where} to the gateway's API root (…/v1)",
            data={"source": where},
        )
    if not re.match(r"^https?://[^/\s]+", gw.base_url):
        return Check(
            id=check_id, title=title, status="fail", cause="invalid_url",
            summary=f"baseURL {gw.base_url!r} is not an http(s) URL",
            fix=f"set provider.{gw.provider_id}.options.baseURL in {where} to e.g. https://gateway.example.com/v1",
            data={"source": where, "base_url": gw.base_url},
        )
    via = f" (from {{env:{gw.base_url_var}}})" if gw.base_url_var else ""
    if gw.npm == _OPENAI_RESPONSES and gw.provider_id != "openai":
        # OpenCode builds such a provider with the OpenAI SDK's default model: the Responses API, not chat completions.
        return Check(
            id=check_id, title=title, status="warn", cause="responses_api",
            summary=f"{gw.base_url}{via}, but npm {_OPENAI_RESPONSES} makes OpenCode call {gw.base_url.rstrip('/')}/responses, not /chat/completions",
            detail="most OpenAI-compatible gateways serve only /chat/completions; OpenCode then fails with 'Unknown path …/responses' (404)",
            fix=f"set provider.{gw.provider_id}.npm to {_OPENAI_COMPATIBLE} in {where} (keep {_OPENAI_RESPONSES} only if the gateway serves the Responses API)",
            data={"source": where, "base_url": gw.base_url, "npm": gw.npm},
        )
    return Check(
        id=check_id, title=title, status="ok", summary=f"{gw.base_url}{via}, set in {where}",
        data={"source": where, "base_url": gw.base_url},
    )


def _check_key(gw: _Gateway, probe: ModelsProbe | None) -> Check:
    check_id = f"provider.{gw.provider_id}.api_key"
    title = f"{gw.provider_id}: API key"
    data = {"state": gw.key_state, "source": gw.key_label}
    rejected = probe is not None and probe.cause in (ProbeCause.UNAUTHORIZED, ProbeCause.FORBIDDEN)
    accepted_without = probe is not None and probe.ok and not probe.auth_sent
    if gw.key_state == "set":
        if rejected:
            return Check(
                id=check_id, title=title, status="fail", cause="key_rejected",
                summary=f"set, from {gw.key_label}, but the gateway rejects it ({probe.status_code})",
                fix=f"replace the key in {gw.key_fix_target} with a valid one for {gw.base_url}", data=data,
            )
        return Check(id=check_id, title=title, status="ok", summary=f"set, from {gw.key_label}", data=data)
    if gw.key_state == "unset":
        sentence = f"NOT SET, from {gw.key_label}: OpenCode sends no Authorization header"
        fix = f"set {gw.key_fix_target}" + (f" (export {gw.key_label[5:-1]}=…)" if gw.key_label.startswith("{env:") else "")
        if accepted_without:
            return Check(
                id=check_id, title=title, status="warn", cause="key_unset",
                summary=sentence + "; the gateway answers without one", fix=fix, data=data,
            )
        return Check(id=check_id, title=title, status="fail", cause="key_unset", summary=sentence, fix=fix, data=data)
    if rejected:
        return Check(
            id=check_id, title=title, status="fail", cause="key_missing",
            summary="no key configured, and the gateway requires one",
            fix=f"set {gw.key_fix_target} and export the variable", data=data,
        )
    if accepted_without:
        return Check(id=check_id, title=title, status="ok", summary="no key configured; the gateway needs none", data=data)
    return Check(
        id=check_id, title=title, status="warn", cause="key_missing",
        summary="no key configured: OpenCode sends no Authorization header",
        fix=f"if the gateway needs a key, set {gw.key_fix_target}", data=data,
    )


def _gateway_check(gw: _Gateway, probe: ModelsProbe) -> Check:
    t = probe.timings
    phases = ", ".join(
        f"{name} {value:.0f} ms" for name, value in (
            ("DNS", t.dns_ms), ("connect", t.connect_ms), ("TLS", t.tls_ms), ("first byte", t.first_byte_ms), ("total", t.total_ms)
        ) if value is not None
    )
    data = {
        "url": probe.url, "status_code": probe.status_code, "auth_sent": probe.auth_sent,
        "timings": t.model_dump(), "models": probe.models, "retry_after": probe.retry_after,
    }
    detail = "\n".join(x for x in (f"timings: {phases}" if phases else "", f"answer: {probe.detail}" if probe.detail else "") if x)
    if probe.ok:
        return Check(
            id=f"gateway.{gw.provider_id}", title=f"{gw.provider_id}: gateway reachable", status="ok",
            summary=f"{probe.summary} ({phases})", detail=detail, duration_ms=t.total_ms or 0.0, data=data,
        )
    return Check(
        id=f"gateway.{gw.provider_id}", title=f"{gw.provider_id}: gateway reachable", status="fail",
        cause=probe.cause.value, summary=probe.summary, detail=detail, fix=probe.fix,
        duration_ms=t.total_ms or 0.0, data=data,
    )


# ---------------------------------------------------------------- models cross-check


def _close(name: str, candidates: list[str]) -> str | None:
    # High cutoff: claude-opus-4-5 must not look like claude-sonnet-4-5, only like claude-opus-4-6.
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.85)
    return found[0] if found else None


def _overlay_hint(project_dir: str) -> str:
    return str(Path(project_dir) / ".nexus" / "models.json")


def _check_models(gw: _Gateway, registry: Registry, config: MergedConfig, probe: ModelsProbe | None, project_dir: str) -> Check:
    pid = gw.provider_id
    check_id, title = f"models.{pid}", f"{pid}: models (registry ↔ opencode.json ↔ gateway)"
    served = probe.models if probe is not None and probe.ok else None
    declared_file = gw.declared_in or "opencode.json"
    declared_keys = list(gw.declared)
    fails: list[str] = []
    not_served = False
    fail_fixes: list[str] = []
    warns: list[str] = []
    warn_fixes: list[str] = []
    overlay = _overlay_hint(project_dir)

    if served is not None:
        for key, api_id in gw.declared.items():
            if api_id in served:
                continue
            near = _close(api_id, served)
            # Entries derived from opencode.json follow a renamed key by themselves; the others need the overlay.
            users = [m.id for m in registry.models if m.cli_model_name == f"{pid}/{key}" and m.source != "opencode.json"]
            # opencode-default follows the top-level "model"; it is fixed there, not in the overlay.
            default_follows = config.data.get("model") == f"{pid}/{key}"
            if default_follows:
                users = [u for u in users if u != "opencode-default"]
            served_text = f"the gateway serves {near}" if near else f"the gateway serves {', '.join(served[:8]) or 'no models'}"
            not_served = True
            fails.append(f"{pid}/{key} is declared in {declared_file} but the gateway does not serve {api_id}; {served_text}")
            if near:
                fix = f"rename the key {key} to {near} in {declared_file}"
                if default_follows:
                    fix += f" and set \"model\" to {pid}/{near}"
                if users:
                    fix += f" and set cli_model_name of {', '.join(users)} to {pid}/{near} in {overlay}"
                fail_fixes.append(fix)
            else:
                fail_fixes.append(f"remove {key} from provider.{pid}.models in {declared_file}, or ask the gateway's owner to serve {api_id}")

    seen_cli: set[str] = set()
    for model in registry.models:
        if model.provider_id != pid or model.source == "opencode.json" or not model.cli_model_name:
            continue
        if model.cli_model_name in seen_cli:
            continue
        seen_cli.add(model.cli_model_name)
        key = model.model_key or ""
        if key in gw.declared:
            continue
        warns.append(_registry_mismatch(model, key, declared_keys, declared_file, served))
        warn_fixes.append(_registry_fix(model, key, gw.declared, declared_file, served, overlay, pid))

    default = config.data.get("model")
    if isinstance(default, str) and default.startswith(f"{pid}/"):
        key = default.split("/", 1)[1]
        if key not in gw.declared:
            near = _close(key, declared_keys)
            fails.append(f"the default model {default} (top-level \"model\") is not declared under provider.{pid}.models")
            fail_fixes.append(f"set \"model\" to {pid}/{near}" if near else f"declare {key} under provider.{pid}.models in {declared_file}")

    extra = sorted(set(served or []) - set(gw.declared.values()))
    info = []
    if served is not None:
        info.append(f"the gateway serves {len(served)} model(s): {', '.join(served[:20])}{' …' if len(served) > 20 else ''}")
        if extra:
            info.append(f"served but not declared in opencode.json (declare to use them): {', '.join(extra[:20])}")
    info.append(f"opencode.json declares: {', '.join(f'{pid}/{k}' for k in declared_keys) or 'nothing'}")
    data = {"declared": declared_keys, "served": served, "mismatches": fails + warns}
    # The first mismatch is the summary; the detail carries the rest and the lists compared.
    detail = "\n".join([*(fails + warns)[1:], *info])
    if fails:
        return Check(
            id=check_id, title=title, status="fail", cause="model_not_served" if not_served else "default_model_undeclared",
            summary=fails[0] + (f" (+{len(fails) + len(warns) - 1} more)" if len(fails) + len(warns) > 1 else ""),
            detail=detail, fix="; ".join(fail_fixes + warn_fixes), data=data,
        )
    if not gw.declared:
        return Check(
            id=check_id, title=title, status="fail", cause="no_models_declared",
            summary=f"provider {pid} declares no models, so OpenCode has nothing to run on it",
            detail=detail, fix=f"add the gateway's model ids under provider.{pid}.models in {declared_file}" + (f" (it serves {', '.join(served[:5])})" if served else ""),
            data=data,
        )
    if warns:
        return Check(
            id=check_id, title=title, status="warn", cause="registry_mismatch",
            summary=warns[0] + (f" (+{len(warns) - 1} more)" if len(warns) > 1 else ""),
            detail=detail, fix="; ".join(warn_fixes), data=data,
        )
    if served is None:
        reason = probe.cause.value if probe is not None else "not probed"
        return Check(
            id=check_id, title=title, status="skipped", cause="gateway_unavailable",
            summary=f"cannot compare with the gateway's model list ({reason}); registry and opencode.json agree",
            detail=detail, data=data,
        )
    return Check(
        id=check_id, title=title, status="ok",
        summary=f"all {len(gw.declared)} declared model(s) are served; the registry matches",
        detail=detail, data=data,
    )


def _registry_mismatch(model: ModelProfile, key: str, declared: list[str], declared_file: str, served: list[str] | None) -> str:
    near = _close(key, declared)
    text = f"{model.id} uses {model.cli_model_name}; {Path(declared_file).name} "
    text += f"declares {near}" if near else f"does not declare {key}"
    if served is not None:
        served_near = key if key in served else _close(key, served)
        text += f"; the gateway serves {served_near}" if served_near else f"; the gateway does not serve {key}"
    return text


def _registry_fix(model: ModelProfile, key: str, declared: dict[str, str], declared_file: str, served: list[str] | None, overlay: str, pid: str) -> str:
    """The change that makes ``model`` runnable; when the gateway's list is known, only changes that land on a served model."""
    near = _close(key, list(declared))
    options = []
    if near and (served is None or declared[near] in served):
        options.append(f"set cli_model_name of {model.id} to {pid}/{near} in {overlay}")
    if near and (served is None or key in served):
        options.append(f"rename the key {near} to {key} in {declared_file}")
    if options:
        return ", or ".join(options)
    if served is not None and key in served:
        return f"declare {key} under provider.{pid}.models in {declared_file} (the gateway serves it)"
    return f"declare {key} under provider.{pid}.models in {declared_file}, or point {model.id} at a declared model with cli_model_name in {overlay} (until then the router skips it)"


def _check_registry(registry: Registry, config: MergedConfig, gateways: list[_Gateway]) -> Check:
    configured = set(config.providers)
    orphans = [
        m for m in registry.models
        if m.cli_model_name and m.provider_id not in configured and m.source != "opencode.json"
    ]
    lines = [p.sentence() for p in registry.problems]
    lines += [f"{m.id} uses {m.cli_model_name}, but no provider {m.provider_id} is in the OpenCode config (the router skips it)" for m in orphans]
    data = {"problems": [p.model_dump() for p in registry.problems], "unrouted": [m.id for m in orphans]}
    if registry.problems:
        return Check(
            id="registry", title="Model registry", status="warn", cause="overlay_entry_skipped",
            summary=registry.problems[0].sentence(), detail="\n".join(lines),
            fix="correct the overlay entries named above", data=data,
        )
    if orphans and gateways:
        target = gateways[0].provider_id
        return Check(
            id="registry", title="Model registry", status="warn", cause="provider_not_configured",
            summary=lines[0] + (f" (+{len(orphans) - 1} more)" if len(orphans) > 1 else ""),
            detail="\n".join(lines),
            fix=f"point them at your gateway: set cli_model_name to {target}/<model> in .nexus/models.json",
            data=data,
        )
    return Check(
        id="registry", title="Model registry", status="ok",
        summary=f"{len(registry.models)} model(s); no overlay problems", detail="\n".join(lines), data=data,
    )


def _check_mcp(config: MergedConfig, env: Mapping[str, str]) -> Check:
    title = "nexus-agents MCP entry"
    servers = config.data.get("mcp") if isinstance(config.data.get("mcp"), dict) else {}
    entry = servers.get(MCP_ENTRY)
    if not isinstance(entry, dict):
        return Check(
            id="mcp", title=title, status="warn", cause="mcp_entry_missing",
            summary="no mcp.nexus-agents entry: OpenCode sessions cannot call nexus tools",
            fix="run `nexus-agents setup --project` (optional: only for using nexus tools from inside OpenCode)",
        )
    source = config.origin("mcp", MCP_ENTRY)
    if entry.get("enabled") is False:
        return Check(
            id="mcp", title=title, status="warn", cause="mcp_entry_disabled",
            summary=f"mcp.nexus-agents is disabled in {source}", fix=f"set \"enabled\": true in {source}",
        )
    command = entry.get("command")
    if entry.get("type", "local") == "local":
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            return Check(
                id="mcp", title=title, status="warn", cause="mcp_entry_invalid",
                summary=f"mcp.nexus-agents in {source} has no command list", fix="run `nexus-agents setup --project --force`",
            )
        exe = command[0]
        found = exe if os.path.isabs(exe) and os.access(exe, os.X_OK) else shutil.which(exe, path=env.get("PATH"))
        if not found:
            return Check(
                id="mcp", title=title, status="warn", cause="mcp_command_missing",
                summary=f"mcp.nexus-agents runs {exe!r}, which is not found", detail=f"command: {command}",
                fix="run `nexus-agents setup --project --force` to point it at this installation",
            )
        return Check(id="mcp", title=title, status="ok", summary=f"present in {source}: {' '.join(command)}", data={"source": source})
    return Check(id="mcp", title=title, status="ok", summary=f"present in {source} ({entry.get('type')})", data={"source": source})


# ---------------------------------------------------------------- probes


async def _check_chat(gw: _Gateway, model: str, redact: Redactor, timeout: float, env: Mapping[str, str]) -> Check:
    result = await probe_chat_stream(
        gw.base_url, model, gw.key, headers=gw.headers, key_source=gw.key_fix_target, timeout=timeout, redactor=redact, env=env,
    )
    check_id, title = f"probe.chat.{gw.provider_id}", f"{gw.provider_id}: streamed chat completion"
    data = {
        "model": model, "status_code": result.status_code, "chunks": result.chunks, "saw_done": result.saw_done,
        "usage": result.usage, "first_token_ms": result.first_token_ms, "timings": result.timings.model_dump(),
    }
    elapsed = result.timings.total_ms or 0.0
    if not result.ok:
        return Check(
            id=check_id, title=title, status="fail", cause=result.cause.value, summary=result.summary,
            detail=result.detail, fix=result.fix, duration_ms=elapsed, data=data,
        )
    reply = f"reply {result.reply_excerpt!r}; " if result.reply_excerpt else ""
    if not result.usage:
        return Check(
            id=check_id, title=title, status="warn", cause="no_usage",
            summary=f"{model}: {result.chunks} chunk(s) and [DONE], but no usage chunk",
            detail=reply + "OpenCode asks for stream_options.include_usage; without it token counts read 0",
            fix="enable usage reporting in streamed responses on the gateway", duration_ms=elapsed, data=data,
        )
    return Check(
        id=check_id, title=title, status="ok",
        summary=f"{model}: {result.chunks} chunk(s), usage and [DONE]",
        detail=f"{reply}usage {json.dumps(result.usage)}", duration_ms=elapsed, data=data,
    )


async def opencode_smoke(opencode: str, model: str, project_dir: str, env: Mapping[str, str], timeout: float = SMOKE_TIMEOUT_S) -> Check:
    """``opencode run --format json --model <model>`` in ``project_dir`` with a tiny prompt on stdin.

    One attempt through the adapter, so the smoke is judged exactly as a delegation is: by its
    events, not its exit code, with silent gateway retries bounded and the process tree ended.
    The check's texts are not redacted here: :func:`run_doctor` redacts the whole report.
    """
    timer = _Timer()
    check_id, title = "probe.opencode_run", "opencode run smoke"
    spec = AttemptSpec(
        cli_model_name=model, prompt=_SMOKE_PROMPT, workdir=Path(project_dir), timeout_s=timeout,
        stall_timeout_s=timeout, max_gateway_retries=1, stats_interval_s=None, env=dict(env), opencode=opencode,
    )
    result = await run_attempt(spec)
    outcome = result.outcome
    data = {"model": model, "exit_code": outcome.exit_code, "failure": outcome.failure and str(outcome.failure.value)}
    if outcome.ok:
        reply = " ".join(result.text.split())[:120]
        return Check(
            id=check_id, title=title, status="ok",
            summary=f"opencode run --model {model} answered {reply!r}",
            duration_ms=timer.ms(), data=data,
        )
    timed_out = outcome.failure in (FailureClass.TIMEOUT, FailureClass.STALLED)
    return Check(
        id=check_id, title=title, status="fail", cause="opencode_timeout" if timed_out else "opencode_error",
        summary=f"opencode run --model {model} failed ({outcome.failure.value}): {outcome.message[:300]}",
        detail=result.stderr_tail[-_STDERR_TAIL:],
        fix=outcome.fix or "run the same command by hand with --print-logs to see what OpenCode did",
        duration_ms=timer.ms(), data=data,
    )


def _skipped(check_id: str, title: str, why: str) -> Check:
    return Check(id=check_id, title=title, status="skipped", summary=why)


def _probe_model(gw: _Gateway, config: MergedConfig, served: list[str] | None) -> str | None:
    default = config.data.get("model")
    if isinstance(default, str) and default.startswith(f"{gw.provider_id}/"):
        key = default.split("/", 1)[1]
        if key in gw.declared and (served is None or gw.declared[key] in served):
            return key
    for key, api_id in gw.declared.items():
        if served is None or api_id in served:
            return key
    return None


# ---------------------------------------------------------------- the run


async def run_doctor(
    project_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    probe: bool = False,
    *,
    gateway_timeout: float = MODELS_TIMEOUT_S,
    chat_timeout: float = CHAT_TIMEOUT_S,
    smoke_timeout: float = SMOKE_TIMEOUT_S,
) -> DoctorReport:
    """Run every check for ``project_dir`` (default: the cwd) with ``env`` (default: ``os.environ``).

    Checks run concurrently, each bounded: a dead or silent gateway gets its verdict within
    ``gateway_timeout`` seconds. With ``probe`` also a streamed chat completion straight to each
    healthy gateway and a real ``opencode run`` smoke. Never raises for what it diagnoses;
    raises :class:`~nexus_core.errors.NexusError` only when ``project_dir`` does not exist.
    """
    started = _Timer()
    env = dict(os.environ if env is None else env)
    directory = str(Path(project_dir or os.getcwd()).resolve())
    if not Path(directory).is_dir():
        raise NexusError(f"The project directory {directory} does not exist", "Pass an existing directory with --dir")
    opencode = shutil.which("opencode", path=env.get("PATH", ""))
    opencode_task = asyncio.create_task(
        _bounded("opencode", "OpenCode on PATH", VERSION_TIMEOUT_S + 5.0, lambda: _check_opencode(env, opencode))
    )
    checks: list[Check] = []
    secret_values: list[str] = []
    gateway_latency: float | None = None
    try:
        config_timer = _Timer()
        try:
            config = load_config(directory, env)
        except ConfigError as exc:
            checks.append(Check(
                id="config", title="OpenCode config", status="fail", cause="config_error",
                summary=exc.sentence(), fix=f"fix {exc.location} and run the doctor again", duration_ms=config_timer.ms(),
                data={"path": exc.path, "line": exc.line, "column": exc.column},
            ))
            config = None
        if config is not None:
            gateways = _gateways(config, env)
            secret_values = [gw.key for gw in gateways if gw.key]
            secret_values += [v for gw in gateways for k, v in gw.headers.items() if is_secret_key(k)]
            registry = build_registry(config, overlay_paths(directory, env))
            checks.append(_check_config(config, config_timer.ms()))
            redact = Redactor.from_env(env, secret_values)
            probes = await _probe_gateways(gateways, gateway_timeout, redact, env)
            if not gateways:
                checks.append(Check(
                    id="gateway", title="Gateway provider", status="warn", cause="no_gateway_provider",
                    summary="no provider in the OpenCode config routes to a gateway (none has options.baseURL)",
                    fix="add provider.custom with npm @ai-sdk/openai-compatible and options.baseURL (see the README's \"Your gateway\")",
                ))
            for gw in gateways:
                result = probes.get(gw.provider_id)
                checks.append(_check_base_url(gw))
                if result is None:
                    checks.append(_check_key(gw, None))
                    checks.append(_skipped(f"gateway.{gw.provider_id}", f"{gw.provider_id}: gateway reachable", "no usable baseURL"))
                else:
                    checks.append(_check_key(gw, result))
                    checks.append(_gateway_check(gw, result))
                    if gateway_latency is None and result.ok:
                        gateway_latency = result.timings.total_ms
                checks.append(_check_models(gw, registry, config, result, directory))
            checks.append(_check_registry(registry, config, gateways))
            checks.append(_check_mcp(config, env))
            if probe:
                checks += await _run_probes(gateways, probes, config, opencode, directory, env, redact, chat_timeout, smoke_timeout)
            else:
                not_run = "not run: `nexus-agents doctor --probe` sends a real request"
                checks += [_skipped(f"probe.chat.{gw.provider_id}", f"{gw.provider_id}: streamed chat completion", not_run) for gw in gateways]
                checks.append(_skipped("probe.opencode_run", "opencode run smoke", not_run))
        else:
            for check_id, title in (("gateway", "Gateway provider"), ("mcp", "nexus-agents MCP entry")):
                checks.append(_skipped(check_id, title, "the OpenCode config did not load"))
        checks.insert(0, await opencode_task)
    finally:
        if not opencode_task.done():
            opencode_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opencode_task
    redact = Redactor.from_env(env, secret_values)
    checks = [_redact_check(c, redact) for c in checks]
    counts = {status: sum(1 for c in checks if c.status == status) for status in ("ok", "warn", "fail", "skipped")}
    return DoctorReport(
        project_dir=directory, probe=probe, ok=counts["fail"] == 0, counts=counts, duration_ms=started.ms(),
        opencode_version=checks[0].data.get("version"), gateway_latency_ms=gateway_latency, checks=checks,
    )


async def _probe_gateways(gateways: list[_Gateway], timeout: float, redact: Redactor, env: Mapping[str, str]) -> dict[str, ModelsProbe]:
    usable = [gw for gw in gateways if re.match(r"^https?://[^/\s]+", gw.base_url)]
    results = await asyncio.gather(*(
        probe_models(gw.base_url, gw.key, headers=gw.headers, key_source=gw.key_fix_target, timeout=timeout, redactor=redact, env=env)
        for gw in usable
    ))
    return {gw.provider_id: result for gw, result in zip(usable, results)}


async def _run_probes(
    gateways: list[_Gateway], probes: dict[str, ModelsProbe], config: MergedConfig, opencode: str | None,
    directory: str, env: Mapping[str, str], redact: Redactor, chat_timeout: float, smoke_timeout: float,
) -> list[Check]:
    """The chat probes (concurrently), then the ``opencode run`` smoke on the first gateway whose chat worked.

    The smoke waits for the chat verdict because OpenCode retries 5xx, 429 and dropped
    connections forever: against a gateway that fails the direct chat it would only hang.
    """
    chosen: dict[str, str] = {}
    skipped: dict[str, Check] = {}
    for gw in gateways:
        check_id, title = f"probe.chat.{gw.provider_id}", f"{gw.provider_id}: streamed chat completion"
        result = probes.get(gw.provider_id)
        key = _probe_model(gw, config, result.models) if result is not None and result.ok else None
        if result is None or not result.ok:
            skipped[gw.provider_id] = _skipped(check_id, title, "the gateway check failed: fix it first")
        elif key is None:
            skipped[gw.provider_id] = _skipped(check_id, title, "no declared model is served by the gateway")
        else:
            chosen[gw.provider_id] = key
    by_id = {gw.provider_id: gw for gw in gateways}
    chats = dict(zip(chosen, await asyncio.gather(*(
        _bounded(
            f"probe.chat.{pid}", f"{pid}: streamed chat completion", chat_timeout + 1.0,
            lambda gw=by_id[pid], key=key: _check_chat(gw, gw.declared[key], redact, chat_timeout, env),
        )
        for pid, key in chosen.items()
    ))))
    checks = [chats.get(gw.provider_id) or skipped[gw.provider_id] for gw in gateways]
    smoke_id, smoke_title = "probe.opencode_run", "opencode run smoke"
    healthy = [pid for pid, check in chats.items() if check.status != "fail"]
    default = config.data.get("model")
    if opencode is None:
        checks.append(_skipped(smoke_id, smoke_title, "OpenCode is not on PATH"))
    elif gateways and not healthy:
        checks.append(_skipped(smoke_id, smoke_title, "no gateway passed the chat probe: fix that first"))
    elif not gateways and not isinstance(default, str):
        checks.append(_skipped(smoke_id, smoke_title, "no gateway provider and no default model in the config"))
    else:
        model = f"{healthy[0]}/{chosen[healthy[0]]}" if healthy else str(default)
        checks.append(await _bounded(
            smoke_id, smoke_title, smoke_timeout + 6.0, lambda: opencode_smoke(opencode, model, directory, env, smoke_timeout)
        ))
    return checks


def _redact_value(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, redact) for v in value]
    return value


def _redact_check(check: Check, redact: Redactor) -> Check:
    return check.model_copy(update={
        "summary": redact(check.summary), "detail": redact(check.detail), "fix": redact(check.fix),
        "data": _redact_value(check.data, redact),
    })
