"""Registry ↔ opencode.json ↔ gateway: one source of what disagrees and the one change that fixes it.

``route`` (why a model is skipped), ``models`` (its warnings), the doctor (``models.<pid>``)
and the dashboard all word a mismatch with these functions, so they never give opposite
fixes. When the gateway's model list is known, a fix only ever lands on a model it serves.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nexus_core.config.loader import MergedConfig
from nexus_core.routing.registry import ModelProfile

__all__ = [
    "Mismatch",
    "close_match",
    "declared_file",
    "declared_models",
    "not_served",
    "overlay_hint",
    "registry_mismatch",
]


@dataclass(frozen=True)
class Mismatch:
    """One disagreement: what it is, and the change that resolves it."""

    summary: str
    fix: str

    def sentence(self) -> str:
        return f"{self.summary}: {self.fix}"


def close_match(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate ``name`` is most likely a typo of, if any."""
    # High cutoff: claude-opus-4-5 must not look like claude-sonnet-4-5, only like claude-opus-4-6.
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.85)
    return found[0] if found else None


def overlay_hint(config: MergedConfig) -> str:
    """The project's registry overlay, where a registry model's ``cli_model_name`` is changed."""
    return str(Path(config.directory) / ".nexus" / "models.json")


def declared_file(config: MergedConfig, pid: str) -> str:
    """The config file that declares provider ``pid``'s models."""
    return config.origin("provider", pid, "models") or "opencode.json"


def declared_models(config: MergedConfig, pid: str) -> dict[str, str]:
    """Provider ``pid``'s declared models: key in opencode.json → the id sent to the gateway."""
    provider = config.providers.get(pid)
    return {k: (m.id or k) for k, m in provider.models.items()} if provider is not None else {}


def registry_mismatch(
    model: ModelProfile,
    declared: Mapping[str, str],
    served: Sequence[str] | None,
    *,
    declared_in: str,
    overlay: str,
) -> Mismatch | None:
    """Why registry model ``model`` cannot run on its provider as configured, or None when its key is declared."""
    pid, key = model.provider_id, model.model_key or ""
    if key in declared:
        return None
    near = close_match(key, list(declared))
    summary = f"{model.id} uses {model.cli_model_name}; {Path(declared_in).name} "
    summary += f"declares {near}" if near else f"does not declare {key}"
    if served is not None:
        served_near = key if key in served else close_match(key, served)
        summary += f"; the gateway serves {served_near}" if served_near else f"; the gateway does not serve {key}"
    options = []
    if near and (served is None or declared[near] in served):
        options.append(f"set cli_model_name of {model.id} to {pid}/{near} in {overlay}")
    if near and (served is None or key in served):
        options.append(f"rename the key {near} to {key} in {declared_in}")
    if options:
        fix = ", or ".join(options)
    elif served is not None and key in served:
        fix = f"declare {key} under provider.{pid}.models in {declared_in} (the gateway serves it)"
    else:
        fix = (
            f"declare {key} under provider.{pid}.models in {declared_in}, or point {model.id} at a declared model "
            f"with cli_model_name in {overlay} (until then the router skips it)"
        )
    return Mismatch(summary, fix)


def not_served(
    pid: str,
    key: str,
    api_id: str,
    served: Sequence[str],
    *,
    declared_in: str,
    overlay: str,
    users: Sequence[str] = (),
    default_follows: bool = False,
) -> Mismatch:
    """A model declared in opencode.json that the gateway's ``/models`` does not list.

    ``users`` are the registry models (not derived from opencode.json) that run on it; when the
    top-level ``model`` names it, ``default_follows`` says so.
    """
    near = close_match(api_id, served)
    served_text = f"the gateway serves {near}" if near else f"the gateway serves {', '.join(served[:8]) or 'no models'}"
    summary = f"{pid}/{key} is declared in {declared_in} but the gateway does not serve {api_id}; {served_text}"
    if near:
        fix = f"rename the key {key} to {near} in {declared_in}"
        if default_follows:
            fix += f' and set "model" to {pid}/{near}'
        if users:
            fix += f" and set cli_model_name of {', '.join(users)} to {pid}/{near} in {overlay}"
    else:
        fix = f"remove {key} from provider.{pid}.models in {declared_in}, or ask the gateway's owner to serve {api_id}"
    return Mismatch(summary, fix)
