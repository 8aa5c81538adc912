"""Demo mode: the reference gateway on loopback and a throw-away OpenCode set-up pointing at it.

The gateway is scripted as a tour (:mod:`nexus_core.gateway.tour`): "explain …" streams a long
answer, "read …" makes a tool call, and one model is down so that fallbacks show. Everything lives in one temporary directory (a home with its own XDG dirs, and a project
whose ``opencode.json`` names the gateway), so the user's own OpenCode config is neither
read nor touched, no key is needed, and closing the demo removes it all.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nexus_core.gateway import ReferenceGateway

__all__ = ["DEMO_KEY_VAR", "DemoEnvironment", "start_demo"]

DEMO_KEY_VAR = "CUSTOM_API_KEY"
# A local, made-up key: the gateway checks it so the demo exercises the real auth path.
DEMO_KEY = "nexus-demo-local-key"
# Variables from the user's shell that would pull their own OpenCode set-up into the demo.
_LEAKY_PREFIXES = ("OPENCODE_", "CUSTOM_API_", "NEXUS_", "XDG_")
# ...but not the dashboard's own choice of transport (``NEXUS_TRANSPORT=run``), which the demo honours.
_KEPT = frozenset({"NEXUS_TRANSPORT"})


@dataclass
class DemoEnvironment:
    """A running demo: the gateway, the temporary root, the project and the environment to use."""

    gateway: ReferenceGateway
    root: Path
    project_dir: Path
    config_file: Path
    env: dict[str, str]

    async def close(self) -> None:
        """Stop the gateway and remove the temporary directory."""
        try:
            await self.gateway.aclose()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


async def start_demo(base_env: Mapping[str, str]) -> DemoEnvironment:
    """Start the reference gateway on 127.0.0.1 and write a temporary OpenCode config for it."""
    from nexus_core.gateway import write_opencode_config
    from nexus_core.gateway.tour import TourGateway, install_tour

    root = Path(tempfile.mkdtemp(prefix="nexus-demo-"))
    try:
        gateway = await TourGateway(api_key=DEMO_KEY).start()
        home = root / "home"
        project_dir = root / "project"
        env = {k: v for k, v in base_env.items() if k in _KEPT or not k.startswith(_LEAKY_PREFIXES)}
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local" / "share"),
            XDG_CACHE_HOME=str(home / ".cache"),
            XDG_STATE_HOME=str(home / ".local" / "state"),
            OPENCODE_DISABLE_MODELS_FETCH="1",
            OPENCODE_DISABLE_AUTOUPDATE="1",
            **{DEMO_KEY_VAR: DEMO_KEY},
        )
        for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        project_dir.mkdir()
        install_tour(gateway, project_dir)
        config_file = write_opencode_config(
            project_dir, gateway.base_url, api_key_env=DEMO_KEY_VAR, default_model="claude-sonnet-4-5"
        )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return DemoEnvironment(gateway=gateway, root=root, project_dir=project_dir, config_file=config_file, env=env)
