"""The MCP door: every assistant as a tool, at `/mcp` (Streamable HTTP)."""
