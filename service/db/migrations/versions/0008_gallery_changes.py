"""a log of gallery changes, so an index saved at one version reconciles from the changes since

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 16:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gallery_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pack_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("added", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gallery_changes")),
    )
    op.create_index("ix_gallery_changes_pack_version", "gallery_changes", ["pack_id", "version"], unique=False)
    with op.batch_alter_table("gallery_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("logged_from", sa.BigInteger(), server_default="0", nullable=False))
    # Changes before this migration were never logged: the log starts at each pack's current version.
    op.execute("UPDATE gallery_state SET logged_from = version")


def downgrade() -> None:
    with op.batch_alter_table("gallery_state", schema=None) as batch_op:
        batch_op.drop_column("logged_from")
    op.drop_index("ix_gallery_changes_pack_version", table_name="gallery_changes")
    op.drop_table("gallery_changes")
