"""The MCP server: nexus as tools for an MCP client (OpenCode itself, editors, agents)."""
