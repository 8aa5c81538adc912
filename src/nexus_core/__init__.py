"""nexus core: routing, the OpenCode adapter, doctor, config, MCP server and CLI. No Textual here."""

__version__ = "0.1.0"
OPENCODE_VERSION = "1.2.15"
