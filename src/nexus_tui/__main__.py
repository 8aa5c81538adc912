"""``nexus-tui``: the dashboard."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nexus-tui", description="The nexus dashboard.")
    parser.add_argument("--demo", action="store_true", help="run against a loopback reference gateway (no key needed)")
    parser.add_argument("--dir", dest="project_dir", default=None, help="project directory (default: the current one)")
    parser.add_argument("--web", action="store_true", help="serve the dashboard in a browser on 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="port for --web (default: 8765)")
    args = parser.parse_args(argv)
    if args.port is not None and not args.web:
        parser.error("--port goes with --web")
    if args.web:
        from nexus_tui.web import DEFAULT_PORT, serve

        return serve(args.port or DEFAULT_PORT, args.project_dir, args.demo)
    from nexus_core.errors import NexusError
    from nexus_tui.app import NexusApp

    missing = [path for path in NexusApp.CSS_PATH if not Path(path).is_file()]
    if missing:
        print(
            f"nexus-tui: the dashboard's stylesheet {missing[0]} is missing from this install; "
            "reinstall nexus-agents (pip install --force-reinstall nexus-agents).",
            file=sys.stderr,
        )
        return 2
    try:
        app = NexusApp(project_dir=args.project_dir, demo=args.demo)
    except NexusError as exc:
        print(f"nexus-tui: {exc}", file=sys.stderr)
        return 2
    try:
        app.run()
    except KeyboardInterrupt:
        return 130
    finally:
        # The app closes the demo itself; this is for an exit that never reached its unmount.
        if app.demo_environment is not None:
            shutil.rmtree(app.demo_environment.root, ignore_errors=True)
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
