"""Run one bench module's ``measure()`` in this process and write its measures as JSON to a file."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from bench.common import to_json


def main(module: str, out: str) -> None:
    measures = importlib.import_module(f"bench.{module}").measure()
    Path(out).write_text(to_json(measures))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
