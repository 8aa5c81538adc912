"""``nexus-tui``: the dashboard."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nexus-tui", description="The nexus dashboard.")
    parser.add_argument("--demo", action="store_true", help="run against a loopback reference gateway (no key needed)")
    parser.add_argument("--dir", dest="project_dir", default=None, help="project directory (default: the current one)")
    args = parser.parse_args(argv)
    from nexus_tui.app import NexusApp

    app = NexusApp(project_dir=args.project_dir, demo=args.demo)
    try:
        app.run()
    finally:
        # The app closes the demo itself; this is for an exit that never reached its unmount.
        if app.demo_environment is not None:
            shutil.rmtree(app.demo_environment.root, ignore_errors=True)
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
