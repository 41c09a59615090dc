"""The other doors: MCP, A2A and the run console."""
