"""Placeholder: root fields for the store (issue 5) are being written here."""

from __future__ import annotations

import strawberry


@strawberry.type
class StoreQueries:
    pass


@strawberry.type
class StoreMutations:
    pass
