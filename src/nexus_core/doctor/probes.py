"""``doctor --probe``: a streamed chat completion to every declared model, then one real ``opencode run``.

Every declared model of each gateway provider is probed, and the ``small_model`` (OpenCode
sends its session-title request there), concurrently and bounded: each model gets its own
check ``probe.chat.<pid>.<model>`` with its verdict and timings, so a model that is rate
limited or unknown to the gateway is reported on that model. ``probe.chat.<pid>`` sums the
provider up. The ``opencode run`` smoke then uses a model that passed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nexus_core.config.gateways import GatewayProvider
from nexus_core.config.loader import MergedConfig
from nexus_core.doctor.probe import ModelsProbe, probe_chat_stream
from nexus_core.doctor.report import Check, CheckStatus, Timer, bounded, skipped
from nexus_core.opencode.attempt import AttemptSpec, run_attempt
from nexus_core.opencode.events import FailureClass
from nexus_core.secrets import Redactor

__all__ = ["PROBE_CONCURRENCY", "SMOKE_TIMEOUT_S", "ProbeTarget", "opencode_smoke", "probe_targets", "run_probes"]

SMOKE_TIMEOUT_S = 60.0
#: Chat probes in flight at once, over all providers: a gateway is not to be flooded by its doctor.
PROBE_CONCURRENCY = 4
_SMOKE_PROMPT = "Reply with the single word OK."
_STDERR_TAIL = 2000


class ProbeTarget:
    """One model to probe: its provider, its key in opencode.json, the id sent to the gateway, and its roles."""

    def __init__(self, gw: GatewayProvider, key: str, api_id: str, roles: tuple[str, ...]) -> None:
        self.gw, self.key, self.api_id, self.roles = gw, key, api_id, roles

    @property
    def cli_model_name(self) -> str:
        return f"{self.gw.provider_id}/{self.key}"

    @property
    def check_id(self) -> str:
        return f"probe.chat.{self.gw.provider_id}.{self.key}"


def _config_model(config: MergedConfig, name: str) -> str | None:
    value = config.data.get(name)
    return value if isinstance(value, str) and "/" in value else None


def probe_targets(gw: GatewayProvider, config: MergedConfig) -> list[ProbeTarget]:
    """Every declared model of ``gw``, plus the ``model`` / ``small_model`` it names but does not declare."""
    roles: dict[str, list[str]] = {}
    for role in ("model", "small_model"):
        named = _config_model(config, role)
        if named and named.split("/", 1)[0] == gw.provider_id:
            roles.setdefault(named.split("/", 1)[1], []).append(role)
    keys = list(gw.declared) + [k for k in roles if k not in gw.declared]
    return [ProbeTarget(gw, k, gw.declared.get(k, k), tuple(roles.get(k, ()))) for k in keys]


def _title(target: ProbeTarget) -> str:
    role = f" ({', '.join(target.roles)})" if target.roles else ""
    return f"{target.cli_model_name}{role}: streamed chat completion"


async def _check_chat(target: ProbeTarget, redact: Redactor, timeout: float, env: Mapping[str, str]) -> Check:
    gw = target.gw
    result = await probe_chat_stream(
        gw.base_url,
        target.api_id,
        gw.key,
        headers=gw.headers,
        key_source=gw.key_fix_target,
        timeout=timeout,
        redactor=redact,
        env=env,
    )
    data = {
        "model": target.cli_model_name,
        "api_id": target.api_id,
        "roles": list(target.roles),
        "status_code": result.status_code,
        "chunks": result.chunks,
        "saw_done": result.saw_done,
        "usage": result.usage,
        "first_token_ms": result.first_token_ms,
        "timings": result.timings.model_dump(),
        "gateway": result.gateway,
        "diagnosis": result.diagnosis,
    }
    elapsed = result.timings.total_ms or 0.0
    base: dict[str, Any] = {"id": target.check_id, "title": _title(target), "duration_ms": elapsed, "data": data}
    if not result.ok:
        return Check(
            **base,
            status="fail",
            cause=result.cause.value,
            summary=result.summary,
            detail=result.detail,
            fix=result.fix,
        )
    reply = f"reply {result.reply_excerpt!r}; " if result.reply_excerpt else ""
    timing = f" in {elapsed:.0f} ms" + (
        f" (first token {result.first_token_ms:.0f} ms)" if result.first_token_ms else ""
    )
    if not result.usage:
        return Check(
            **base,
            status="warn",
            cause="no_usage",
            summary=f"{target.api_id}: {result.chunks} chunk(s) and [DONE]{timing}, but no usage chunk",
            detail=reply + "OpenCode asks for stream_options.include_usage; without it token counts read 0",
            fix="enable usage reporting in streamed responses on the gateway",
        )
    return Check(
        **base,
        status="ok",
        summary=f"{target.api_id}: {result.chunks} chunk(s), usage and [DONE]{timing}",
        detail=f"{reply}usage {json.dumps(result.usage)}",
    )


def _provider_summary(gw: GatewayProvider, checks: list[Check]) -> Check:
    """``probe.chat.<pid>``: how many of the provider's models answered, the failures named by model."""
    check_id, title = f"probe.chat.{gw.provider_id}", f"{gw.provider_id}: streamed chat completion"
    failed = [c for c in checks if c.status == "fail"]
    passed = [c for c in checks if c.status != "fail"]
    data = {"models": {c.data["model"]: c.status for c in checks}}
    if not failed:
        worst: CheckStatus = "warn" if any(c.status == "warn" for c in checks) else "ok"
        first = checks[0]
        return Check(
            id=check_id,
            title=title,
            status=worst,
            cause=first.cause if worst == "warn" else None,
            summary=f"all {len(checks)} model(s) answer: " + "; ".join(c.summary for c in checks),
            fix=first.fix if worst == "warn" else "",
            data={**first.data, **data},
        )
    named = "; ".join(f"{c.data['model']}: {c.summary}" for c in failed)
    head = failed[0]
    if passed:
        summary = f"{len(failed)} of {len(checks)} model(s) fail ({named}); {', '.join(c.data['model'] for c in passed)} answer"
    else:
        summary = head.summary if len(failed) == 1 else f"every model fails: {named}"
    return Check(
        id=check_id,
        title=title,
        status="fail",
        cause=head.cause,
        summary=summary,
        detail=head.detail,
        fix=head.fix,
        data={**head.data, **data},
    )


async def opencode_smoke(
    opencode: str, model: str, project_dir: str, env: Mapping[str, str], timeout: float = SMOKE_TIMEOUT_S
) -> Check:
    """``opencode run --format json --model <model>`` in ``project_dir`` with a tiny prompt on stdin.

    One attempt through the adapter, so the smoke is judged exactly as a delegation is: by its
    events, not its exit code, with silent gateway retries bounded and the process tree ended.
    The check's texts are not redacted here: the doctor redacts the whole report.
    """
    timer = Timer()
    check_id, title = "probe.opencode_run", "opencode run smoke"
    spec = AttemptSpec(
        cli_model_name=model,
        prompt=_SMOKE_PROMPT,
        workdir=Path(project_dir),
        timeout_s=timeout,
        stall_timeout_s=timeout,
        max_gateway_retries=1,
        stats_interval_s=None,
        env=dict(env),
        opencode=opencode,
    )
    result = await run_attempt(spec)
    outcome = result.outcome
    data = {"model": model, "exit_code": outcome.exit_code, "failure": outcome.failure and str(outcome.failure.value)}
    if outcome.ok:
        reply = " ".join(result.text.split())[:120]
        return Check(
            id=check_id,
            title=title,
            status="ok",
            summary=f"opencode run --model {model} answered {reply!r}",
            duration_ms=timer.ms(),
            data=data,
        )
    timed_out = outcome.failure in (FailureClass.TIMEOUT, FailureClass.STALLED)
    return Check(
        id=check_id,
        title=title,
        status="fail",
        cause="opencode_timeout" if timed_out else "opencode_error",
        summary=f"opencode run --model {model} failed ({(outcome.failure or FailureClass.FAILED).value}): {outcome.message[:300]}",
        detail=result.stderr_tail[-_STDERR_TAIL:],
        fix=outcome.fix or "run the same command by hand with --print-logs to see what OpenCode did",
        duration_ms=timer.ms(),
        data=data,
    )


def _smoke_model(config: MergedConfig, passed: list[ProbeTarget]) -> str | None:
    """The model for the smoke: the config's default model if it passed, else the first that passed."""
    default = _config_model(config, "model")
    names = [t.cli_model_name for t in passed]
    return default if default in names else (names[0] if names else None)


async def run_probes(
    gateways: list[GatewayProvider],
    probes: dict[str, ModelsProbe],
    config: MergedConfig,
    opencode: str | None,
    directory: str,
    env: Mapping[str, str],
    redact: Redactor,
    chat_timeout: float,
    smoke_timeout: float,
) -> list[Check]:
    """The chat probes (every model, at most :data:`PROBE_CONCURRENCY` at once), then the smoke on a model that passed.

    The smoke waits for the chat verdicts because OpenCode retries 5xx, 429 and dropped
    connections forever: on a model that fails the direct chat it would only hang.
    """
    gate = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def one(target: ProbeTarget) -> Check:
        async with gate:
            return await bounded(
                target.check_id,
                _title(target),
                chat_timeout + 1.0,
                lambda: _check_chat(target, redact, chat_timeout, env),
            )

    planned: dict[str, list[ProbeTarget]] = {}
    checks: list[Check] = []
    for gw in gateways:
        result = probes.get(gw.provider_id)
        targets = probe_targets(gw, config)
        if result is None or not result.ok:
            checks.append(
                skipped(
                    f"probe.chat.{gw.provider_id}",
                    f"{gw.provider_id}: streamed chat completion",
                    "the gateway check failed: fix it first",
                )
            )
        elif not targets:
            checks.append(
                skipped(
                    f"probe.chat.{gw.provider_id}",
                    f"{gw.provider_id}: streamed chat completion",
                    "the provider declares no model",
                )
            )
        else:
            planned[gw.provider_id] = targets
    flat = [t for targets in planned.values() for t in targets]
    results = dict(zip([t.check_id for t in flat], await asyncio.gather(*(one(t) for t in flat)), strict=True))
    passed: list[ProbeTarget] = []
    for gw in gateways:
        planned_here = planned.get(gw.provider_id)
        if not planned_here:
            continue
        own = [results[t.check_id] for t in planned_here]
        passed += [t for t, c in zip(planned_here, own, strict=True) if c.status != "fail"]
        checks += [_provider_summary(gw, own), *own]
    checks.append(await _smoke(gateways, config, opencode, directory, env, passed, smoke_timeout))
    return checks


async def _smoke(
    gateways: list[GatewayProvider],
    config: MergedConfig,
    opencode: str | None,
    directory: str,
    env: Mapping[str, str],
    passed: list[ProbeTarget],
    smoke_timeout: float,
) -> Check:
    smoke_id, smoke_title = "probe.opencode_run", "opencode run smoke"
    default = _config_model(config, "model")
    if opencode is None:
        return skipped(smoke_id, smoke_title, "OpenCode is not on PATH")
    model = _smoke_model(config, passed)
    if gateways and model is None:
        return skipped(smoke_id, smoke_title, "no model passed the chat probe: fix that first")
    if not gateways and default is None:
        return skipped(smoke_id, smoke_title, "no gateway provider and no default model in the config")
    chosen = model or str(default)
    return await bounded(
        smoke_id,
        smoke_title,
        smoke_timeout + 6.0,
        lambda: opencode_smoke(opencode, chosen, directory, env, smoke_timeout),
    )
