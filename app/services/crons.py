"""Placeholder: the cron service (issue 5, cron part) is being written here."""

from __future__ import annotations

from app.db.engine import Database
from app.services.assistants import AssistantService
from app.services.runs import RunService
from app.services.threads import ThreadService


class CronService:
    def __init__(
        self,
        db: Database,
        runs: RunService,
        assistants: AssistantService,
        threads: ThreadService,
    ) -> None:
        self.db = db
        self.runs = runs
        self.assistants = assistants
        self.threads = threads

    async def fire_due(self) -> int:
        return 0
