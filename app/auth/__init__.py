"""LangGraph custom auth (`langgraph.json` `auth.path` naming a `langgraph_sdk.Auth`): who is
asking (authenticate) and what they may see and do (authorize, as filters on metadata)."""
