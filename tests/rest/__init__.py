"""The LangGraph-compatible REST API, through LangGraph's own SDKs."""
