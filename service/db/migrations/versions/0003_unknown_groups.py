"""unknown groups: linking unmatched faces across submissions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 19:05:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "linking_state",
        sa.Column("pack_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pack_id", name=op.f("pk_linking_state")),
    )
    op.create_table(
        "unknown_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pack_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("representative_face_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("confirmed_by", sa.String(length=128), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["representative_face_id"],
            ["probe_faces.id"],
            name=op.f("fk_unknown_groups_representative_face_id_probe_faces"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unknown_groups")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("unknown_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_unknown_groups_pack_id"), ["pack_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_unknown_groups_size"), ["size"], unique=False)
        batch_op.create_index(batch_op.f("ix_unknown_groups_status"), ["status"], unique=False)

    op.create_table(
        "group_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("probe_face_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("nearest_face_id", sa.Integer(), nullable=True),
        sa.Column("nearest_score", sa.Float(), nullable=True),
        sa.Column("linked_by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["unknown_groups.id"],
            name=op.f("fk_group_members_group_id_unknown_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["probe_face_id"],
            ["probe_faces.id"],
            name=op.f("fk_group_members_probe_face_id_probe_faces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_members")),
        sa.UniqueConstraint("probe_face_id", name=op.f("uq_group_members_probe_face_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("group_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_group_members_group_id"), ["group_id"], unique=False)

    op.create_table(
        "group_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("other_group_ids", sa.JSON(), nullable=False),
        sa.Column("face_ids", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_decisions")),
    )
    with op.batch_alter_table("group_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_group_decisions_group_id"), ["group_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("group_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_decisions_group_id"))
    op.drop_table("group_decisions")
    with op.batch_alter_table("group_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_members_group_id"))
    op.drop_table("group_members")
    with op.batch_alter_table("unknown_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unknown_groups_status"))
        batch_op.drop_index(batch_op.f("ix_unknown_groups_size"))
        batch_op.drop_index(batch_op.f("ix_unknown_groups_pack_id"))
    op.drop_table("unknown_groups")
    op.drop_table("linking_state")
