"""Placeholder: the store service (issue 5, store part) is being written here."""

from __future__ import annotations

from app.runtime.store import PostgresStore


class StoreService:
    def __init__(self, backend: PostgresStore) -> None:
        self.backend = backend
