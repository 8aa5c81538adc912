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
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nexus_core.config.gateways import GatewayProvider as _Gateway
from nexus_core.config.gateways import gateway_providers as _gateways
from nexus_core.config.loader import ConfigError, MergedConfig, load_config
from nexus_core.diagnosis.known import known_causes
from nexus_core.doctor.known_first import say_known_first
from nexus_core.doctor.mcp_check import check_mcp as _check_mcp
from nexus_core.doctor.models_check import check_models as _check_models
from nexus_core.doctor.models_check import check_registry as _check_registry
from nexus_core.doctor.probe import (
    CHAT_TIMEOUT_S,
    MODELS_TIMEOUT_S,
    ModelsProbe,
    probe_models,
)
from nexus_core.doctor.probes import SMOKE_TIMEOUT_S, opencode_smoke, run_probes
from nexus_core.doctor.provider_checks import check_base_url as _check_base_url
from nexus_core.doctor.provider_checks import check_key as _check_key
from nexus_core.doctor.provider_checks import gateway_check as _gateway_check
from nexus_core.doctor.report import Check, CheckStatus, DoctorReport
from nexus_core.doctor.report import Timer as _Timer
from nexus_core.doctor.report import bounded as _bounded
from nexus_core.doctor.report import skipped as _skipped
from nexus_core.errors import NexusError
from nexus_core.opencode.lifeline import end_tree
from nexus_core.opencode.locate import locate_opencode
from nexus_core.routing.registry import build_registry, overlay_paths
from nexus_core.secrets import Redactor, is_secret_key

__all__ = [
    "SUPPORTED_OPENCODE",
    "TESTED_OPENCODE",
    "Check",
    "CheckStatus",
    "DoctorReport",
    "opencode_smoke",
    "run_doctor",
]


TESTED_OPENCODE = "1.2.15"  # the pin (the container's and bootstrap's)
TESTED_OPENCODE_RELEASES = ("1.2.15", "1.18.33")
SUPPORTED_OPENCODE = "tested with 1.2.15 and 1.18.33"
_SUPPORTED_MIN = (1, 2, 15)
_SUPPORTED_MAX = (1, 18, 33)

VERSION_TIMEOUT_S = 3.0
# With the version known from npm's package.json, `--version` only confirms the binary starts,
# and must not hold the report back longer than the gateway verdict.
PACKAGED_VERSION_WAIT_S = MODELS_TIMEOUT_S
# After the version process is ended, at most this long to read its pipes to their end.
PIPE_DRAIN_S = 1.0
_STDERR_TAIL = 2000


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
        if (
            isinstance(manifest, dict)
            and manifest.get("name") == "opencode-ai"
            and isinstance(manifest.get("version"), str)
        ):
            return manifest["version"]
    return None


async def _check_opencode(env: Mapping[str, str], opencode: str | None) -> Check:
    """OpenCode on PATH and its version; ``data["version"]`` holds the version when known."""
    timer = _Timer()
    title = "OpenCode on PATH"
    if opencode is None:
        named = env.get("NEXUS_OPENCODE")
        return Check(
            id="opencode",
            title=title,
            status="fail",
            cause="opencode_missing",
            summary=(
                f'NEXUS_OPENCODE names {named}, which is not an executable file (nexus reports this as "No model adapter configured")'
                if named
                else 'OpenCode is not on PATH (nexus reports this as "No model adapter configured")'
            ),
            detail=f"NEXUS_OPENCODE={named}"
            if named
            else f"searched PATH={env.get('PATH', '')} and the checkout's .tools",
            fix=f"install it (npm install -g opencode-ai@{TESTED_OPENCODE}) or put it on PATH, then check `which opencode`",
            duration_ms=timer.ms(),
        )
    packaged = _package_version(opencode)
    seen = _identity(opencode, packaged)
    if seen is not None and seen in _VERSIONS_SEEN:
        return _version_verdict(opencode, _VERSIONS_SEEN[seen], timer, "")
    wait = VERSION_TIMEOUT_S if packaged is None else PACKAGED_VERSION_WAIT_S
    try:
        proc = await asyncio.create_subprocess_exec(
            opencode,
            "--version",
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return _cannot_start(opencode, exc, timer)
    try:
        async with asyncio.timeout(wait):
            out, err = await proc.communicate()
    except TimeoutError:
        # Slow is not broken: a busy machine can take this long to start the binary.
        if packaged is not None:
            return _version_verdict(
                opencode,
                _parse_version(packaged),
                timer,
                f"version from its package.json; `opencode --version` was still starting after {wait:g} s",
            )
        return Check(
            id="opencode",
            title=title,
            status="warn",
            cause="opencode_slow",
            summary=f"OpenCode at {opencode}, but `opencode --version` did not answer within {wait:g} s",
            detail="a busy machine starts OpenCode slowly; a hung one never answers",
            fix="run `opencode --version` by hand: if it hangs, reinstall OpenCode",
            duration_ms=timer.ms(),
            data={"path": opencode, "version": None, "supported": SUPPORTED_OPENCODE},
        )
    finally:
        await end_tree(proc)
        # A communicate cut short (the wait ran out, the check was cancelled) leaves the pipes open,
        # and their transport would then be closed by the garbage collector after its loop: read
        # them to their end now (the tree is gone, so that is at once).
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            async with asyncio.timeout(PIPE_DRAIN_S):
                await proc.communicate()
    text = out.decode(errors="replace").strip()
    version = _parse_version(text.splitlines()[-1] if text else "")
    if proc.returncode != 0 or version is None:
        return Check(
            id="opencode",
            title=title,
            status="fail",
            cause="opencode_broken",
            summary=f"`{opencode} --version` failed (exit {proc.returncode})",
            detail=(err.decode(errors="replace").strip() or text)[-_STDERR_TAIL:],
            fix=f"reinstall OpenCode (npm install -g opencode-ai@{TESTED_OPENCODE})",
            duration_ms=timer.ms(),
            data={"path": opencode},
        )
    if seen is not None:
        if len(_VERSIONS_SEEN) >= _VERSIONS_KEPT:
            _VERSIONS_SEEN.pop(next(iter(_VERSIONS_SEEN)))
        _VERSIONS_SEEN[seen] = version
    return _version_verdict(opencode, version, timer, "")


# `opencode --version` costs over a second of CPU (the whole binary starts), and the dashboard and
# the MCP server re-check on every config change: a binary that answered once is not asked again
# until it is replaced (another inode, size or mtime, or another npm release beside it).
_VERSIONS_KEPT = 16
_VERSIONS_SEEN: dict[tuple[object, ...], tuple[int, int, int]] = {}


def _identity(opencode: str, packaged: str | None) -> tuple[object, ...] | None:
    try:
        real = os.path.realpath(opencode)
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, packaged)


def _cannot_start(opencode: str, exc: OSError, timer: _Timer) -> Check:
    return Check(
        id="opencode",
        title="OpenCode on PATH",
        status="fail",
        cause="opencode_broken",
        summary=f"{opencode} cannot be started ({exc.strerror or exc})",
        fix=f"reinstall OpenCode (npm install -g opencode-ai@{TESTED_OPENCODE})",
        duration_ms=timer.ms(),
        data={"path": opencode},
    )


def _version_verdict(opencode: str, version: tuple[int, int, int] | None, timer: _Timer, note: str) -> Check:
    title = "OpenCode on PATH"
    if version is None:
        return Check(
            id="opencode",
            title=title,
            status="warn",
            cause="opencode_version_unknown",
            summary=f"OpenCode at {opencode} does not say its version",
            detail=note,
            fix=f"install the tested version: npm install -g opencode-ai@{TESTED_OPENCODE}",
            duration_ms=timer.ms(),
            data={"path": opencode, "version": None, "supported": SUPPORTED_OPENCODE},
        )
    shown = ".".join(map(str, version))
    data = {"path": opencode, "version": shown, "supported": SUPPORTED_OPENCODE}
    if not (_SUPPORTED_MIN <= version <= _SUPPORTED_MAX):
        return Check(
            id="opencode",
            title=title,
            status="warn",
            cause="opencode_version_untested",
            summary=f"OpenCode {shown} at {opencode} is outside the releases nexus is {SUPPORTED_OPENCODE}",
            detail="\n".join(
                x for x in (f"nexus is {SUPPORTED_OPENCODE}; event formats may differ in {shown}", note) if x
            ),
            fix=f"install a tested release: npm install -g opencode-ai@{TESTED_OPENCODE} (or @{TESTED_OPENCODE_RELEASES[-1]})",
            duration_ms=timer.ms(),
            data=data,
        )
    return Check(
        id="opencode",
        title=title,
        status="ok",
        summary=f"OpenCode {shown} at {opencode} ({SUPPORTED_OPENCODE})",
        detail=note,
        duration_ms=timer.ms(),
        data=data,
    )


# ---------------------------------------------------------------- config, provider, key


def _check_config(config: MergedConfig, elapsed_ms: float) -> Check:
    layers = [f"{layer.kind:<9} {layer.source}" for layer in config.layers]
    wins = []
    for pid in config.providers:
        parts = [f"provider {pid}: from {config.origin('provider', pid)}"]
        for label, path in (
            ("baseURL", ("options", "baseURL")),
            ("apiKey", ("options", "apiKey")),
            ("models", ("models",)),
        ):
            source = config.origin("provider", pid, *path)
            if source:
                parts.append(f"{label} from {source}")
        wins.append("; ".join(parts))
    detail = "\n".join(["files (lowest precedence first):", *(f"  {line}" for line in layers or ["(none)"]), *wins])
    data = {
        "layers": [layer.source for layer in config.layers],
        "providers": {pid: config.origin("provider", pid) for pid in config.providers},
    }
    if not config.layers:
        return Check(
            id="config",
            title="OpenCode config",
            status="warn",
            cause="no_config",
            summary=f"no OpenCode config file found for {config.directory}",
            detail=detail,
            fix='create opencode.json in the project with your gateway provider (see the README\'s "Your gateway")',
            duration_ms=elapsed_ms,
            data=data,
        )
    names = (
        ", ".join(f"{pid} ({Path(config.origin('provider', pid) or '?').name})" for pid in config.providers)
        or "no providers"
    )
    return Check(
        id="config",
        title="OpenCode config",
        status="ok",
        summary=f"{len(config.layers)} file(s) parsed; {names}",
        detail=detail,
        duration_ms=elapsed_ms,
        data=data,
    )


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
    opencode = locate_opencode(env)
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
            checks.append(
                Check(
                    id="config",
                    title="OpenCode config",
                    status="fail",
                    cause="config_error",
                    summary=exc.sentence(),
                    fix=f"fix {exc.location} and run the doctor again",
                    duration_ms=config_timer.ms(),
                    data={"path": exc.path, "line": exc.line, "column": exc.column},
                )
            )
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
                checks.append(
                    Check(
                        id="gateway",
                        title="Gateway provider",
                        status="warn",
                        cause="no_gateway_provider",
                        summary="no provider in the OpenCode config routes to a gateway (none has options.baseURL)",
                        fix='add provider.custom with npm @ai-sdk/openai-compatible and options.baseURL (see the README\'s "Your gateway")',
                    )
                )
            for gw in gateways:
                result = probes.get(gw.provider_id)
                checks.append(_check_base_url(gw))
                if result is None:
                    checks.append(_check_key(gw, None))
                    checks.append(
                        _skipped(
                            f"gateway.{gw.provider_id}", f"{gw.provider_id}: gateway reachable", "no usable baseURL"
                        )
                    )
                else:
                    checks.append(_check_key(gw, result))
                    checks.append(_gateway_check(gw, result))
                    if gateway_latency is None and result.ok:
                        gateway_latency = result.timings.total_ms
                checks.append(_check_models(gw, registry, config, result))
            checks.append(_check_registry(registry, config, gateways))
            checks.append(_check_mcp(config, env))
            if probe:
                checks += await run_probes(
                    gateways, probes, config, opencode, directory, env, redact, chat_timeout, smoke_timeout
                )
            else:
                not_run = "not run: `nexus-agents doctor --probe` sends a real request"
                checks += [
                    _skipped(f"probe.chat.{gw.provider_id}", f"{gw.provider_id}: streamed chat completion", not_run)
                    for gw in gateways
                ]
                checks.append(_skipped("probe.opencode_run", "opencode run smoke", not_run))
            checks = say_known_first(checks, known_causes(config, env))
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
        project_dir=directory,
        probe=probe,
        ok=counts["fail"] == 0,
        counts=counts,
        duration_ms=started.ms(),
        opencode_version=checks[0].data.get("version"),
        gateway_latency_ms=gateway_latency,
        checks=checks,
    )


async def _probe_gateways(
    gateways: list[_Gateway], timeout: float, redact: Redactor, env: Mapping[str, str]
) -> dict[str, ModelsProbe]:
    usable = [gw for gw in gateways if re.match(r"^https?://[^/\s]+", gw.base_url)]
    results = await asyncio.gather(
        *(
            probe_models(
                gw.base_url,
                gw.key,
                headers=gw.headers,
                key_source=gw.key_fix_target,
                timeout=timeout,
                redactor=redact,
                env=env,
            )
            for gw in usable
        )
    )
    return {gw.provider_id: result for gw, result in zip(usable, results, strict=True)}


def _redact_value(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, redact) for v in value]
    return value


def _redact_check(check: Check, redact: Redactor) -> Check:
    return check.model_copy(
        update={
            "summary": redact(check.summary),
            "detail": redact(check.detail),
            "fix": redact(check.fix),
            "data": _redact_value(check.data, redact),
        }
    )
