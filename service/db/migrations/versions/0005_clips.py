"""clips in a submission: media, clip facts and camera of a probe image, shots of a face, tracks as persons,
segments processed

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 05:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("probe_images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("camera", sa.String(length=200), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("media", sa.String(length=16), nullable=False, server_default="image"))
        batch_op.add_column(sa.Column("duration_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("clip", sa.JSON(), nullable=True))
    with op.batch_alter_table("probe_faces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("frame_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("time_s", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_probe_faces_frame_sha256"), ["frame_sha256"], unique=False)
    # SQLite rebuilds the table: keep its AUTOINCREMENT (a rebuilt person's id is never reused).
    with op.batch_alter_table("probe_persons", schema=None, table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("clip_image_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("start_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("end_s", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_probe_persons_clip_image_id"), ["clip_image_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_probe_persons_clip_image_id_probe_images"),
            "probe_images",
            ["clip_image_id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.create_table(
        "clip_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("probe_image_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("faces", sa.JSON(), nullable=False),
        sa.Column("embeddings", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["probe_image_id"],
            ["probe_images.id"],
            name=op.f("fk_clip_segments_probe_image_id_probe_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clip_segments")),
        sa.UniqueConstraint("probe_image_id", "segment", name=op.f("uq_clip_segments_probe_image_id")),
    )
    with op.batch_alter_table("clip_segments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clip_segments_probe_image_id"), ["probe_image_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("clip_segments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clip_segments_probe_image_id"))
    op.drop_table("clip_segments")
    op.execute("DELETE FROM probe_persons WHERE clip_image_id IS NOT NULL")
    with op.batch_alter_table("probe_persons", schema=None, table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_probe_persons_clip_image_id_probe_images"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_probe_persons_clip_image_id"))
        batch_op.drop_column("end_s")
        batch_op.drop_column("start_s")
        batch_op.drop_column("clip_image_id")
    with op.batch_alter_table("probe_faces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_probe_faces_frame_sha256"))
        batch_op.drop_column("time_s")
        batch_op.drop_column("frame_sha256")
    op.execute("DELETE FROM probe_images WHERE media = 'video'")
    with op.batch_alter_table("probe_images", schema=None) as batch_op:
        batch_op.drop_column("clip")
        batch_op.drop_column("duration_s")
        batch_op.drop_column("media")
        batch_op.drop_column("camera")
