"""``python -m nexus_core`` is ``nexus-agents``."""

from nexus_core.cli import main

raise SystemExit(main())
