"""Placeholder: webhook delivery (issue 5, webhook part) is being written here."""

from __future__ import annotations

from app.broker import Broker
from app.db.engine import Database
from app.runtime.langgraph_config import LanggraphConfig
from app.settings import Settings


class WebhookService:
    def __init__(
        self, settings: Settings, langgraph_config: LanggraphConfig, db: Database, broker: Broker
    ) -> None:
        self.settings = settings
        self.langgraph_config = langgraph_config
        self.db = db
        self.broker = broker

    async def requeue_due(self) -> int:
        return 0
