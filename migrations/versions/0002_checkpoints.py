"""checkpointer tables

Revision ID: 0002_checkpoints
Revises: 0001_initial
Create Date: 2026-11-25 03:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

from app.persistence.checkpoint_schema import CHECKPOINT_DDL, CHECKPOINT_DROP

revision: str = "0002_checkpoints"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in CHECKPOINT_DDL:
        op.execute(statement)


def downgrade() -> None:
    for statement in CHECKPOINT_DROP:
        op.execute(statement)
