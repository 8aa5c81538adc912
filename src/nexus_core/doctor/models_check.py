"""The doctor's cross-checks: registry ↔ opencode.json ↔ the gateway's model list, and the registry itself.

Every mismatch is worded by :mod:`nexus_core.routing.crosscheck`, the one source ``route``
and ``models`` use too.
"""

from __future__ import annotations

from nexus_core.config.gateways import GatewayProvider
from nexus_core.config.loader import MergedConfig
from nexus_core.doctor.probe import ModelsProbe
from nexus_core.doctor.report import Check
from nexus_core.routing.crosscheck import close_match, not_served, overlay_hint, registry_mismatch
from nexus_core.routing.registry import Registry

__all__ = ["check_models", "check_registry"]


def check_models(gw: GatewayProvider, registry: Registry, config: MergedConfig, probe: ModelsProbe | None) -> Check:
    """``models.<pid>``: every declared model served, every registry model on a declared one, the default declared."""
    pid = gw.provider_id
    check_id, title = f"models.{pid}", f"{pid}: models (registry ↔ opencode.json ↔ gateway)"
    served = probe.models if probe is not None and probe.ok else None
    declared_file = gw.declared_in or "opencode.json"
    declared_keys = list(gw.declared)
    fails: list[str] = []
    unserved = False
    fail_fixes: list[str] = []
    warns: list[str] = []
    warn_fixes: list[str] = []
    overlay = overlay_hint(config)

    if served is not None:
        for key, api_id in gw.declared.items():
            if api_id in served:
                continue
            # Entries derived from opencode.json follow a renamed key by themselves; the others need the overlay.
            users = [
                m.id for m in registry.models if m.cli_model_name == f"{pid}/{key}" and m.source != "opencode.json"
            ]
            # opencode-default follows the top-level "model"; it is fixed there, not in the overlay.
            default_follows = config.data.get("model") == f"{pid}/{key}"
            if default_follows:
                users = [u for u in users if u != "opencode-default"]
            mismatch = not_served(
                pid,
                key,
                api_id,
                served,
                declared_in=declared_file,
                overlay=overlay,
                users=users,
                default_follows=default_follows,
            )
            unserved = True
            fails.append(mismatch.summary)
            fail_fixes.append(mismatch.fix)

    seen_cli: set[str] = set()
    for model in registry.models:
        if model.provider_id != pid or model.source == "opencode.json" or not model.cli_model_name:
            continue
        if model.cli_model_name in seen_cli:
            continue
        seen_cli.add(model.cli_model_name)
        found = registry_mismatch(model, gw.declared, served, declared_in=declared_file, overlay=overlay)
        if found is not None:
            warns.append(found.summary)
            warn_fixes.append(found.fix)

    default = config.data.get("model")
    if isinstance(default, str) and default.startswith(f"{pid}/"):
        key = default.split("/", 1)[1]
        if key not in gw.declared:
            near = close_match(key, declared_keys)
            fails.append(f'the default model {default} (top-level "model") is not declared under provider.{pid}.models')
            fail_fixes.append(
                f'set "model" to {pid}/{near}'
                if near
                else f"declare {key} under provider.{pid}.models in {declared_file}"
            )

    extra = sorted(set(served or []) - set(gw.declared.values()))
    info = []
    if served is not None:
        info.append(
            f"the gateway serves {len(served)} model(s): {', '.join(served[:20])}{' …' if len(served) > 20 else ''}"
        )
        if extra:
            info.append(f"served but not declared in opencode.json (declare to use them): {', '.join(extra[:20])}")
    info.append(f"opencode.json declares: {', '.join(f'{pid}/{k}' for k in declared_keys) or 'nothing'}")
    data = {"declared": declared_keys, "served": served, "mismatches": fails + warns}
    # The first mismatch is the summary; the detail carries the rest and the lists compared.
    detail = "\n".join([*(fails + warns)[1:], *info])
    if fails:
        return Check(
            id=check_id,
            title=title,
            status="fail",
            cause="model_not_served" if unserved else "default_model_undeclared",
            summary=fails[0] + (f" (+{len(fails) + len(warns) - 1} more)" if len(fails) + len(warns) > 1 else ""),
            detail=detail,
            fix="; ".join(fail_fixes + warn_fixes),
            data=data,
        )
    if not gw.declared:
        return Check(
            id=check_id,
            title=title,
            status="fail",
            cause="no_models_declared",
            summary=f"provider {pid} declares no models, so OpenCode has nothing to run on it",
            detail=detail,
            fix=f"add the gateway's model ids under provider.{pid}.models in {declared_file}"
            + (f" (it serves {', '.join(served[:5])})" if served else ""),
            data=data,
        )
    if warns:
        return Check(
            id=check_id,
            title=title,
            status="warn",
            cause="registry_mismatch",
            summary=warns[0] + (f" (+{len(warns) - 1} more)" if len(warns) > 1 else ""),
            detail=detail,
            fix="; ".join(warn_fixes),
            data=data,
        )
    if served is None:
        reason = probe.cause.value if probe is not None else "not probed"
        return Check(
            id=check_id,
            title=title,
            status="skipped",
            cause="gateway_unavailable",
            summary=f"cannot compare with the gateway's model list ({reason}); registry and opencode.json agree",
            detail=detail,
            data=data,
        )
    return Check(
        id=check_id,
        title=title,
        status="ok",
        summary=f"all {len(gw.declared)} declared model(s) are served; the registry matches",
        detail=detail,
        data=data,
    )


def check_registry(registry: Registry, config: MergedConfig, gateways: list[GatewayProvider]) -> Check:
    configured = set(config.providers)
    orphans = [
        m
        for m in registry.models
        if m.cli_model_name and m.provider_id not in configured and m.source != "opencode.json"
    ]
    lines = [p.sentence() for p in registry.problems]
    lines += [
        f"{m.id} uses {m.cli_model_name}, but no provider {m.provider_id} is in the OpenCode config (the router skips it)"
        for m in orphans
    ]
    data = {"problems": [p.model_dump() for p in registry.problems], "unrouted": [m.id for m in orphans]}
    if registry.problems:
        return Check(
            id="registry",
            title="Model registry",
            status="warn",
            cause="overlay_entry_skipped",
            summary=registry.problems[0].sentence(),
            detail="\n".join(lines),
            fix="correct the overlay entries named above",
            data=data,
        )
    if orphans and gateways:
        target = gateways[0].provider_id
        return Check(
            id="registry",
            title="Model registry",
            status="warn",
            cause="provider_not_configured",
            summary=lines[0] + (f" (+{len(orphans) - 1} more)" if len(orphans) > 1 else ""),
            detail="\n".join(lines),
            fix=f"point them at your gateway: set cli_model_name to {target}/<model> in .nexus/models.json",
            data=data,
        )
    return Check(
        id="registry",
        title="Model registry",
        status="ok",
        summary=f"{len(registry.models)} model(s); no overlay problems",
        detail="\n".join(lines),
        data=data,
    )
