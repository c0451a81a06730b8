"""a gallery template keeps its face's five landmarks, for aligned side-by-side comparison

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 16:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("face_templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("landmarks", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("face_templates", schema=None) as batch_op:
        batch_op.drop_column("landmarks")
