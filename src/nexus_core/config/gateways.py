"""The providers of an OpenCode config that route to a gateway, and the key OpenCode will send to each.

Read by the doctor (to probe each gateway as OpenCode would) and by the known-cause check
(:mod:`nexus_core.diagnosis.known`) that runs before a delegation.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nexus_core.config.loader import MergedConfig

__all__ = ["GatewayProvider", "KeyState", "auth_store", "gateway_providers", "resolve_key"]

KeyState = Literal["set", "unset", "absent"]
OPENAI_COMPATIBLE = "@ai-sdk/openai-compatible"


@dataclass
class GatewayProvider:
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


def auth_store(env: Mapping[str, str]) -> dict[str, Any]:
    data_home = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or os.path.expanduser("~")) / ".local" / "share")
    try:
        data = json.loads((Path(data_home) / "opencode" / "auth.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_key(
    config: MergedConfig, pid: str, options: dict[str, Any], env: Mapping[str, str]
) -> tuple[str | None, KeyState, str, str]:
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
    stored = auth_store(env).get(pid)
    if isinstance(stored, dict) and stored.get("type") == "api" and stored.get("key"):
        return str(stored["key"]), "set", "`opencode auth login` (auth.json)", fix_target
    env_vars = config.data["provider"][pid].get("env") or []
    from_env = next((v for v in env_vars if isinstance(v, str) and env.get(v)), None)
    if from_env:
        return env[from_env], "set", f"the {from_env} environment variable (provider env)", fix_target
    return None, "absent", "no apiKey configured", fix_target


def gateway_providers(config: MergedConfig, env: Mapping[str, str]) -> list[GatewayProvider]:
    """Providers with an ``options.baseURL`` or the openai-compatible SDK, as OpenCode resolves them."""
    out: list[GatewayProvider] = []
    for pid, provider in config.providers.items():
        if "baseURL" not in provider.options and provider.npm != OPENAI_COMPATIBLE:
            continue
        raw_url = provider.options.get("baseURL")
        # OpenCode also expands ${VAR} in baseURL when it builds the SDK.
        base_url = re.sub(
            r"\$\{([^}]+)\}", lambda m: env.get(m.group(1), m.group(0)), raw_url if isinstance(raw_url, str) else ""
        ).strip()
        key, state, label, fix_target = resolve_key(config, pid, provider.options, env)
        headers = provider.options.get("headers")
        out.append(
            GatewayProvider(
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
