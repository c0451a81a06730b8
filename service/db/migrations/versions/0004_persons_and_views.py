"""persons within an incident; views of a custody record and their fused template

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("custody_images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("view", sa.String(length=64), nullable=False, server_default="front"))
    with op.batch_alter_table("face_templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="view"))
        batch_op.alter_column("custody_image_id", existing_type=sa.Integer(), nullable=True)

    op.create_table(
        "probe_persons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("incident_reference", sa.String(length=200), nullable=False),
        sa.Column("searched", sa.Boolean(), nullable=False),
        sa.Column("fusion", sa.String(length=16), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("review_state", sa.String(length=32), nullable=False),
        sa.Column("review_version", sa.Integer(), nullable=False),
        sa.Column("review_outcome", sa.String(length=32), nullable=True),
        sa.Column("review_candidate_id", sa.Integer(), nullable=True),
        sa.Column("first_reviewer", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_probe_persons_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probe_persons")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("probe_persons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_probe_persons_submission_id"), ["submission_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_probe_persons_review_state"), ["review_state"], unique=False)

    op.create_table(
        "person_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("above_threshold", sa.Boolean(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("best_face_id", sa.Integer(), nullable=True),
        sa.Column("best_face_score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["best_face_id"],
            ["probe_faces.id"],
            name=op.f("fk_person_candidates_best_face_id_probe_faces"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["probe_persons.id"],
            name=op.f("fk_person_candidates_person_id_probe_persons"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name=op.f("fk_person_candidates_subject_id_subjects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person_candidates")),
        sa.UniqueConstraint("person_id", "rank", name=op.f("uq_person_candidates_person_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("person_candidates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_person_candidates_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_person_candidates_subject_id"), ["subject_id"], unique=False)

    with op.batch_alter_table("probe_faces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_probe_faces_person_id"), ["person_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_probe_faces_person_id_probe_persons"),
            "probe_persons",
            ["person_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("probe_faces", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_probe_faces_person_id_probe_persons"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_probe_faces_person_id"))
        batch_op.drop_column("person_id")
    with op.batch_alter_table("person_candidates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_person_candidates_subject_id"))
        batch_op.drop_index(batch_op.f("ix_person_candidates_person_id"))
    op.drop_table("person_candidates")
    with op.batch_alter_table("probe_persons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_probe_persons_review_state"))
        batch_op.drop_index(batch_op.f("ix_probe_persons_submission_id"))
    op.drop_table("probe_persons")
    op.execute("DELETE FROM face_templates WHERE kind = 'fused'")
    with op.batch_alter_table("face_templates", schema=None) as batch_op:
        batch_op.alter_column("custody_image_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("kind")
    with op.batch_alter_table("custody_images", schema=None) as batch_op:
        batch_op.drop_column("view")
