"""Helpers shared by the subcommands: loading the project state and printing."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from nexus_core.config.loader import MergedConfig, load_config
from nexus_core.routing.registry import Registry, build_registry, overlay_paths

__all__ = ["console", "load_project", "print_json"]


def console() -> Console:
    """A console for tables; piped output gets long lines rather than tables folded at 80 columns."""
    width = None if sys.stdout.isatty() else 240
    return Console(highlight=False, width=width)


def load_project(args: argparse.Namespace) -> tuple[MergedConfig, Registry]:
    """The merged OpenCode config and the registry for ``--dir`` (or the cwd)."""
    config = load_config(args.project_dir)
    registry = build_registry(config, overlay_paths(args.project_dir))
    return config, registry


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
