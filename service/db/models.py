"""The database schema: the source of truth for the gallery, submissions, results and jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from service.domain.times import as_utc

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Timestamp(TypeDecorator[datetime]):
    """A point in time, stored in UTC and read back aware (UTC) on every database.

    SQLite has no time zone type: SQLAlchemy writes a datetime's wall clock and drops its offset, so
    ``10:00+01:00`` came back as ``10:00``. Every value is turned to UTC before it is written (a naive
    one is taken to be UTC), and a naive value read back is marked UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return as_utc(value)


class GalleryState(Base):
    """One row per model pack, bumped on every gallery change.

    Every process compares it with its in-memory index to tell when that index is stale.
    """

    __tablename__ = "gallery_state"
    pack_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    # Every change after this version is in gallery_changes (earlier ones predate the log).
    logged_from: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class GalleryChange(Base):
    """One template added to or removed from a pack's gallery, at the gallery version that did it.

    A process holding an index saved at version v reconciles by reading the changes after v (the
    templates added, and the ids removed) instead of every template (service.services.gallery).
    """

    __tablename__ = "gallery_changes"
    __table_args__ = (Index("ix_gallery_changes_pack_version", "pack_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pack_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)
    template_id: Mapped[int] = mapped_column(Integer)  # no foreign key: a removed template is gone
    added: Mapped[bool] = mapped_column(Boolean)


class Subject(Base):
    """A person in the custody gallery, with the provenance R7 asks for."""

    __tablename__ = "subjects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    custody_reference: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(200), default="")
    lawful_basis: Mapped[str] = mapped_column(String(200), default="")
    conviction_status: Mapped[str] = mapped_column(String(64), default="unknown")
    under_18: Mapped[bool] = mapped_column(Boolean, default=False)
    enrolled_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    images: Mapped[list[CustodyImage]] = relationship(back_populates="subject", cascade="all, delete-orphan")
    templates: Mapped[list[FaceTemplate]] = relationship(back_populates="subject", cascade="all, delete-orphan")


class CustodyImage(Base):
    __tablename__ = "custody_images"
    __table_args__ = (UniqueConstraint("subject_id", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    file_name: Mapped[str] = mapped_column(String(255))
    # Which view of the subject's record the image is: front, left, right, left_profile,
    # right_profile, or an operator's free text (service.domain.views).
    view: Mapped[str] = mapped_column(String(64), default="front")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    subject: Mapped[Subject] = relationship(back_populates="images")


class FaceTemplate(Base):
    """One gallery embedding; its id is the key in the FAISS index.

    A ``view`` template is the face of one custody image. A record with several views also has one
    ``fused`` template (no image of its own): the normalised mean of its views, kept in step with
    them; the subject scores at its best template, view or fused (benchmarks/cctv.py).
    """

    __tablename__ = "face_templates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    custody_image_id: Mapped[int | None] = mapped_column(
        ForeignKey("custody_images.id", ondelete="CASCADE"), index=True, nullable=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="view")  # service.domain.views: view | fused
    pack_id: Mapped[str] = mapped_column(String(64), index=True)
    dim: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    quality_score: Mapped[float] = mapped_column(Float)
    box: Mapped[list[Any]] = mapped_column(JSON)
    # The face's five landmarks in the custody image's pixels (none: a fused template, or one enrolled
    # before they were kept), for the aligned comparison view.
    landmarks: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    subject: Mapped[Subject] = relationship(back_populates="templates")


class Submission(Base):
    """A sprint: a batch of retailers' stills submitted under one case reference and purpose."""

    __tablename__ = "submissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_reference: Mapped[str] = mapped_column(String(128), index=True)
    purpose: Mapped[str] = mapped_column(Text)
    submitted_by: Mapped[str] = mapped_column(String(128))
    submitted_role: Mapped[str] = mapped_column(String(16), default="analyst")
    search_poor_faces: Mapped[bool] = mapped_column(Boolean, default=False)
    pack_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)
    # The sprint-report figures of probes the retention purge deleted (counts only, no personal data),
    # added to what remains so the report still says what was supplied and found.
    purged_figures: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)

    images: Mapped[list[ProbeImage]] = relationship(
        back_populates="submission", cascade="all, delete-orphan", order_by="ProbeImage.id"
    )


class ProbeImage(Base):
    """One still or clip of a submission, with the provenance R8 asks for and its processing status.

    A clip (``media`` "video") keeps its original file unchanged under ``sha256``; its faces are
    those of its tracks' best shots, each shot a still of its own (``ProbeFace.frame_sha256``).
    """

    __tablename__ = "probe_images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    file_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    retailer: Mapped[str] = mapped_column(String(200), default="")
    store: Mapped[str] = mapped_column(String(200), default="")
    incident_reference: Mapped[str] = mapped_column(String(200), default="")
    captured_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    supplied_by: Mapped[str] = mapped_column(String(200), default="")
    witness_statement: Mapped[bool] = mapped_column(Boolean, default=False)
    camera: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    media: Mapped[str] = mapped_column(String(16), default="image")  # image | video
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # a clip's length
    clip: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # service.video.clips.ClipInfo
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)

    submission: Mapped[Submission] = relationship(back_populates="images")
    faces: Mapped[list[ProbeFace]] = relationship(
        back_populates="image", cascade="all, delete-orphan", order_by="ProbeFace.face_index"
    )


class ProbeFace(Base):
    __tablename__ = "probe_faces"
    __table_args__ = (UniqueConstraint("probe_image_id", "face_index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    probe_image_id: Mapped[int] = mapped_column(ForeignKey("probe_images.id", ondelete="CASCADE"), index=True)
    face_index: Mapped[int] = mapped_column(Integer)
    box: Mapped[list[Any]] = mapped_column(JSON)
    landmarks: Mapped[list[Any]] = mapped_column(JSON)
    det_score: Mapped[float] = mapped_column(Float)
    quality_score: Mapped[float] = mapped_column(Float)
    usable: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    pack_id: Mapped[str] = mapped_column(String(64))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    searched: Mapped[bool] = mapped_column(Boolean, default=False)
    poor_face_override: Mapped[bool] = mapped_column(Boolean, default=False)
    threshold: Mapped[float] = mapped_column(Float)
    # Review workflow (service.domain.review): current state, guarded by an optimistic version.
    review_state: Mapped[str] = mapped_column(String(32), default="unreviewed", index=True)
    review_version: Mapped[int] = mapped_column(Integer, default=0)
    review_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    review_candidate_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # a Candidate.id of this face
    first_reviewer: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # The person of its incident the face belongs to (service.domain.persons); set once the
    # incident's stills are all processed.
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("probe_persons.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # A face of a clip: the shot (a frame stored as a still) it was found in, and the shot's time
    # in seconds from the clip's start; the box and landmarks are in the shot's pixels.
    frame_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    time_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    image: Mapped[ProbeImage] = relationship(back_populates="faces")
    candidates: Mapped[list[Candidate]] = relationship(
        back_populates="face",
        cascade="all, delete-orphan",
        order_by="Candidate.rank",
    )


class Candidate(Base):
    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("probe_face_id", "rank"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    probe_face_id: Mapped[int] = mapped_column(ForeignKey("probe_faces.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    above_threshold: Mapped[bool] = mapped_column(Boolean)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    template_id: Mapped[int | None] = mapped_column(ForeignKey("face_templates.id", ondelete="SET NULL"), nullable=True)

    face: Mapped[ProbeFace] = relationship(back_populates="candidates")
    subject: Mapped[Subject] = relationship()


class ProbePerson(Base):
    """One person of an incident: its faces across the incident's stills, searched as one unit.

    A track of a clip is a person too: its faces are the track's best shots, and ``clip_image_id``,
    ``start_s`` and ``end_s`` say which clip and when the person was in view.
    """

    __tablename__ = "probe_persons"
    # Never reuse a rebuilt person's id (SQLite would): audit events and decisions name it.
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    incident_reference: Mapped[str] = mapped_column(String(200), default="")
    searched: Mapped[bool] = mapped_column(Boolean, default=False)
    fusion: Mapped[str] = mapped_column(String(16))
    threshold: Mapped[float] = mapped_column(Float)
    clip_image_id: Mapped[int | None] = mapped_column(
        ForeignKey("probe_images.id", ondelete="CASCADE"), nullable=True, index=True
    )
    start_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # Reviewed as one unit (service.domain.review); each decision is applied to every member face.
    review_state: Mapped[str] = mapped_column(String(32), default="unreviewed", index=True)
    review_version: Mapped[int] = mapped_column(Integer, default=0)
    review_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    review_candidate_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # a PersonCandidate.id
    first_reviewer: Mapped[str | None] = mapped_column(String(128), nullable=True)

    faces: Mapped[list[ProbeFace]] = relationship(order_by="ProbeFace.id")
    candidates: Mapped[list[PersonCandidate]] = relationship(
        back_populates="person", cascade="all, delete-orphan", passive_deletes=True, order_by="PersonCandidate.rank"
    )


class PersonCandidate(Base):
    """A subject in a person's fused candidate list, with the member face that resembles it most."""

    __tablename__ = "person_candidates"
    __table_args__ = (UniqueConstraint("person_id", "rank"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("probe_persons.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    above_threshold: Mapped[bool] = mapped_column(Boolean)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    best_face_id: Mapped[int | None] = mapped_column(ForeignKey("probe_faces.id", ondelete="SET NULL"), nullable=True)
    best_face_score: Mapped[float] = mapped_column(Float)

    person: Mapped[ProbePerson] = relationship(back_populates="candidates")
    subject: Mapped[Subject] = relationship()


class ClipSegment(Base):
    """One processed span of a clip: every face of its sampled frames, so a restart resumes after it.

    Kept until the clip's tracks are stored, then deleted with the job's last transaction.
    """

    __tablename__ = "clip_segments"
    __table_args__ = (UniqueConstraint("probe_image_id", "segment"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    probe_image_id: Mapped[int] = mapped_column(ForeignKey("probe_images.id", ondelete="CASCADE"), index=True)
    segment: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)  # frames sampled
    faces: Mapped[list[Any]] = mapped_column(JSON)  # one object per face (time, box, landmarks, quality)
    embeddings: Mapped[bytes] = mapped_column(LargeBinary)  # the faces' embeddings, float32, in order
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Job(Base):
    """The durable work queue: one job per probe image, leased by one worker at a time."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="process_probe")
    probe_image_id: Mapped[int] = mapped_column(ForeignKey("probe_images.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class User(Base):
    """A local account (R10): salted, slow password hash (argon2id); never a default password."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class ApiToken(Base):
    """A bearer token: a sign-in session (expires) or a script's API token. Only its hash is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # session | api
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class ReviewDecision(Base):
    """Every decision ever taken on a probe face; the face's state is the result of them all."""

    __tablename__ = "review_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    probe_face_id: Mapped[int] = mapped_column(ForeignKey("probe_faces.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id", ondelete="SET NULL"), nullable=True)
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("subjects.id", ondelete="SET NULL"), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    username: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class AuditHead(Base):
    """One row: the chain's last sequence number and hash, locked by every append."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class AuditEvent(Base):
    """Append-only, tamper-evident: hash = sha256(prev_hash + canonical JSON of the event) (R1, R2);
    mac = HMAC-SHA256 of seq and hash with the audit key, which the database does not hold (None:
    written before the trail was anchored)."""

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(48), index=True)
    object_type: Mapped[str] = mapped_column(String(48), default="")
    object_id: Mapped[str] = mapped_column(String(64), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    mac: Mapped[str | None] = mapped_column(String(64), default=None)


class LinkingState(Base):
    """One row per model pack; its ``version`` is replaced by a random stamp on every change to
    unknown groups, so every process can tell when its in-memory index of unknown faces is stale."""

    __tablename__ = "linking_state"
    pack_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class UnknownGroup(Base):
    """Faces of one unknown person (no gallery match) linked across submissions, retailers and time.

    A group of one face is a singleton (not shown as a group). ``decided_by`` names the last reviewer
    who confirmed, split or merged it: automatic linking never merges a reviewed group.
    """

    __tablename__ = "unknown_groups"
    # Never reuse the id of a deleted group (SQLite would): decisions and audit events name it.
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pack_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open | confirmed
    size: Mapped[int] = mapped_column(Integer, default=0, index=True)
    representative_face_id: Mapped[int | None] = mapped_column(
        ForeignKey("probe_faces.id", ondelete="SET NULL"), nullable=True
    )
    version: Mapped[int] = mapped_column(Integer, default=0)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    confirmed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    members: Mapped[list[GroupMember]] = relationship(
        back_populates="group", cascade="all, delete-orphan", passive_deletes=True, order_by="GroupMember.id"
    )


class GroupMember(Base):
    """One unknown probe face in its group, with how it got there and how sure that link was."""

    __tablename__ = "group_members"
    __table_args__ = ({"sqlite_autoincrement": True},)  # ids never reused: in-memory indexes compare them
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("unknown_groups.id", ondelete="CASCADE"), index=True)
    probe_face_id: Mapped[int] = mapped_column(ForeignKey("probe_faces.id", ondelete="CASCADE"), unique=True)
    # Average cosine to the group's members when the face joined (None: it started the group, or a
    # reviewer put it there); the member it resembled most, and that score.
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    nearest_face_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nearest_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    linked_by: Mapped[str] = mapped_column(String(128), default="auto")  # auto | a reviewer's username
    reason: Mapped[str] = mapped_column(String(32), default="unmatched")  # unmatched | no_match | split | merge
    linked_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    group: Mapped[UnknownGroup] = relationship(back_populates="members")


class GroupDecision(Base):
    """Every reviewer decision on unknown groups (confirm, split, merge) and every identification of a member."""

    __tablename__ = "group_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(Integer, index=True)  # no FK: the history outlives the group
    action: Mapped[str] = mapped_column(String(16))  # confirm | split | merge | identified
    other_group_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    face_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    username: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
