"""Enums and small types shared by several resources."""

from __future__ import annotations

from app.pagination import SortOrder
from app.services.common import IfExists
from schema.enums import graphql_enum

graphql_enum(
    IfExists,
    description="What to do when creating something whose id already exists.",
    values={
        "RAISE": "Fail with a CONFLICT error (default).",
        "DO_NOTHING": "Return the existing one unchanged.",
    },
)
graphql_enum(SortOrder, description="Sort direction.")
