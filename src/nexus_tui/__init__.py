"""nexus dashboard: a Textual app over :mod:`nexus_core`."""
