"""store: namespaces compared bytewise, so a namespace prefix is a range of the primary key

Revision ID: 0006_store
Revises: 0005_webhooks_ttl
Create Date: 2026-11-25 04:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_store"
down_revision: str | None = "0005_webhooks_ttl"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Under the "C" collation text[] order is bytewise, element by element: the namespaces that
    # start with (a, b) are exactly those in [(a, b), (a, b || chr(1))), which the primary key's
    # btree answers. Rebuilds the primary key index.
    op.execute('ALTER TABLE store_items ALTER COLUMN namespace TYPE text[] COLLATE "C"')


def downgrade() -> None:
    op.execute('ALTER TABLE store_items ALTER COLUMN namespace TYPE text[] COLLATE "default"')
