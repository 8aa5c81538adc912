"""Configuration: OpenCode's JSONC dialect, the merged config loader, the setup editor and the live watcher."""
