"""LangGraph's checkpointer and store on Postgres, and the migrations."""
