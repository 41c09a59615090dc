"""Placeholder: root fields for the cron (issue 5) are being written here."""

from __future__ import annotations

import strawberry


@strawberry.type
class CronQueries:
    pass


@strawberry.type
class CronMutations:
    pass
