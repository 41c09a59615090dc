"""Enums and small types shared by several resources."""

from __future__ import annotations

import enum

import strawberry

from app.pagination import SortOrder as ServiceSortOrder
from app.services.common import IfExists as ServiceIfExists


@strawberry.enum(description="What to do when creating something whose id already exists.")
class IfExists(enum.Enum):
    RAISE = strawberry.enum_value("raise", description="Fail with a CONFLICT error (default).")
    DO_NOTHING = strawberry.enum_value(
        "do_nothing", description="Return the existing one unchanged."
    )

    def to_service(self) -> ServiceIfExists:
        return ServiceIfExists(self.name.lower())


@strawberry.enum(description="Sort direction.")
class SortOrder(enum.Enum):
    ASC = "asc"
    DESC = "desc"

    def to_service(self) -> ServiceSortOrder:
        return ServiceSortOrder(self.value)
