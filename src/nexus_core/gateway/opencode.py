"""A ready OpenCode config that points the ``custom`` provider at a gateway (for tests and the demo)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nexus_core.errors import NexusError

__all__ = ["DEFAULT_MODEL_LIMITS", "opencode_config", "write_opencode_config"]

#: The two models the seed guide declares, with its limits.
DEFAULT_MODEL_LIMITS: dict[str, dict[str, Any]] = {
    "claude-opus-4-5": {"name": "Claude Opus 4.5", "limit": {"context": 200000, "output": 65536}},
    "claude-sonnet-4-5": {"name": "Claude Sonnet 4.5", "limit": {"context": 200000, "output": 65536}},
}
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def opencode_config(
    base_url: str,
    *,
    api_key_env: str | None = None,
    models: Iterable[str] = DEFAULT_MODEL_LIMITS,
    provider: str = "custom",
    default_model: str | None = None,
    small_model: str | None = None,
    timeout_ms: int | None = None,
) -> dict[str, Any]:
    """The OpenCode config (as a dict) for provider ``provider`` at ``base_url``.

    The key is never written: with ``api_key_env`` the config says ``{env:VAR}`` and OpenCode
    reads the variable. ``default_model`` (e.g. ``claude-sonnet-4-5``) sets the top-level
    ``model`` to ``<provider>/<default_model>``.

    ``small_model`` (default: ``claude-sonnet-4-5`` if declared, else the first model) is set
    because OpenCode otherwise sends its session-title request to ``opencode/gpt-5-nano`` on
    opencode.ai, off the gateway. ``timeout_ms`` sets the provider's request timeout (OpenCode's
    default is 300 000 ms; a gateway that never answers fails only after it).
    """
    options: dict[str, Any] = {"baseURL": base_url}
    if api_key_env is not None:
        if not _ENV_VAR.match(api_key_env):
            raise NexusError(
                f"{api_key_env!r} is not an environment variable name",
                "Use letters, digits and _ only, e.g. CUSTOM_API_KEY",
            )
        options["apiKey"] = f"{{env:{api_key_env}}}"
    if timeout_ms is not None:
        options["timeout"] = timeout_ms
    declared = {
        model: DEFAULT_MODEL_LIMITS.get(model, {"name": model, "limit": {"context": 200000, "output": 65536}})
        for model in models
    }
    config: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            provider: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Nexus reference gateway",
                "options": options,
                "models": declared,
            }
        },
    }
    small = small_model or ("claude-sonnet-4-5" if "claude-sonnet-4-5" in declared else next(iter(declared), None))
    if small is not None:
        config["small_model"] = f"{provider}/{small}"
    if default_model is not None:
        config["model"] = f"{provider}/{default_model}"
    return config


def write_opencode_config(target: str | Path, base_url: str, **options: Any) -> Path:
    """Write :func:`opencode_config` as ``opencode.json``; ``target`` is a directory or a file path.

    Returns the file written. Keyword ``options`` are those of :func:`opencode_config`.
    """
    path = Path(target)
    if path.is_dir() or not path.suffix:
        path = path / "opencode.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(opencode_config(base_url, **options), indent=2) + "\n", encoding="utf-8")
    return path
