"""LangGraph's persistence on our Postgres: the checkpointer (fenced per run attempt, with
write-behind) and the long-term memory store (with embeddings). Graph execution lives in
`app.runtime`; the SQLModel tables of lgql's own resources in `app.db`."""
