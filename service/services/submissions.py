"""Sprints: create a submission, upload its stills with provenance, read progress and results."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from service.db.engine import read_session
from service.db.image_store import ImageStore, StagedFile, sha256_bytes
from service.db.models import (
    Candidate,
    ClipSegment,
    Job,
    PersonCandidate,
    ProbeFace,
    ProbeImage,
    ProbePerson,
    Submission,
)
from service.domain.clips import CLIP, STILL, shot_captured_at
from service.domain.provenance import ProbeProvenance
from service.domain.roles import Principal
from service.domain.search import require_case_and_purpose
from service.errors import InvalidRequest, NotFound, PayloadTooLarge, ServiceError
from service.services import audit
from service.services.views import (
    CandidateOut,
    ClipOut,
    FaceInContext,
    ImageError,
    PersonCandidateOut,
    PersonInContext,
    PersonOut,
    ProbeImageResult,
    ProbeImageStatus,
    Progress,
    Quality,
    ReviewInfo,
    ShotOut,
    StoredFaceOut,
    SubmissionDetail,
    SubmissionResults,
    SubmissionSummary,
    TrackOut,
)
from service.video.formats import SNIFF_BYTES, looks_like_clip

if TYPE_CHECKING:
    from service.embeddings.decode import DecodedStill

# Decodes a still (its bytes or its file) into working-size pixels with its own size, or raises a
# typed error (``service.embeddings.decode``).
Decoder = Callable[[bytes | Path], "DecodedStill"]


class ClipFacts(Protocol):
    """What a clip's check found (``service.video.clips.ClipInfo``)."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def duration_s(self) -> float: ...
    def to_dict(self) -> dict[str, Any]: ...


# Checks a clip (its bytes or its file) whole and decodable within the limits, or raises ``ClipUnreadable``.
ClipProber = Callable[[bytes | Path], ClipFacts]


@dataclass(frozen=True, slots=True)
class Checked:
    """An upload found acceptable: its frame size, and a clip's facts."""

    width: int
    height: int
    clip: ClipFacts | None = None

    @property
    def media(self) -> str:
        return CLIP if self.clip is not None else STILL


IMAGE_STATUSES = ("queued", "processing", "done", "failed")


@dataclass(frozen=True, slots=True)
class Upload:
    """A file to store: its bytes, or (an HTTP upload) already streamed to a staged file of the store."""

    file_name: str
    data: bytes | StagedFile
    provenance: ProbeProvenance = field(default_factory=ProbeProvenance)


def visible_submission(session: Session, actor: Principal, submission_id: int) -> Submission:
    """The submission if ``actor`` may see it; analysts see only their own (404 otherwise)."""
    submission = session.get(Submission, submission_id)
    if submission is None or not (actor.reads_everything or submission.submitted_by == actor.username):
        raise NotFound(f"submission {submission_id} not found")
    return submission


@dataclass(frozen=True, slots=True)
class UploadLimits:
    still_bytes: int
    clip_bytes: int


class SubmissionService:
    """Needs no model: stills are validated by ``decode``, clips by ``probe_clip``, the pack named by ``pack_id``.

    Every upload is checked from its staged file (an upload given as bytes is staged first), so a
    request's files are never all in memory at once; ``decode_slots`` bounds the stills decoded at
    once across the process.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        store: ImageStore,
        decode: Decoder,
        probe_clip: ClipProber,
        pack_id: str,
        limits: UploadLimits,
        decode_slots: threading.Semaphore | None = None,
    ) -> None:
        self.factory = factory
        self.store = store
        self.decode = decode
        self.probe_clip = probe_clip
        self.pack_id = pack_id
        self.limits = limits
        self.decode_slots = decode_slots or threading.Semaphore(1)

    def create(self, actor: Principal, case_reference: str, purpose: str, search_poor_faces: bool = False) -> int:
        require_case_and_purpose(case_reference, purpose)
        with self.factory() as session, session.begin():
            submission = Submission(
                case_reference=case_reference.strip(),
                purpose=purpose.strip(),
                submitted_by=actor.username,
                submitted_role=str(actor.role),
                search_poor_faces=search_poor_faces,
                pack_id=self.pack_id,
            )
            session.add(submission)
            session.flush()
            audit.append(
                session,
                actor,
                "submission_created",
                "submission",
                submission.id,
                case_reference=submission.case_reference,
                purpose=submission.purpose,
                search_poor_faces=search_poor_faces,
            )
            return int(submission.id)

    def validate(self, file_name: str, staged: StagedFile) -> Checked:
        """Refuse a staged upload that is over-size, or not a decodable still or a whole, decodable clip."""
        clip = looks_like_clip(staged.head(SNIFF_BYTES), file_name)
        limit = self.limits.clip_bytes if clip else self.limits.still_bytes
        if staged.size > limit:
            kind = "clip" if clip else "still"
            raise PayloadTooLarge(f"{file_name}: {staged.size} bytes exceeds the limit of {limit} bytes for a {kind}")
        try:
            if clip:
                facts = self.probe_clip(staged.path)
                return Checked(facts.width, facts.height, facts)
            with self.decode_slots:
                still = self.decode(staged.path)
        except ServiceError as exc:
            raise type(exc)(f"{file_name}: {exc.message}", code=exc.code) from exc
        return Checked(still.width, still.height)

    def add_images(self, actor: Principal, submission_id: int, uploads: list[Upload]) -> list[int]:
        """Store every upload and queue it, or (if any is bad) store none of them.

        The uploads' staged files are this call's: adopted into the store, or removed, whatever happens.
        """
        owned = [u.data for u in uploads if isinstance(u.data, StagedFile)]
        try:
            if not uploads:
                raise InvalidRequest("no images in the request")
            with read_session(self.factory) as session:
                submission = visible_submission(session, actor, submission_id)
                if submission.submitted_by != actor.username:
                    raise NotFound(f"submission {submission_id} not found")
            files = []
            for upload in uploads:
                if isinstance(upload.data, StagedFile):
                    files.append(upload.data)
                else:
                    files.append(self.store.stage_bytes(upload.data))
                    owned.append(files[-1])
            checked = [self.validate(upload.file_name, file) for upload, file in zip(uploads, files, strict=True)]
            for file in files:
                self.store.adopt(file)
            return self._queue(actor, submission_id, uploads, files, checked)
        finally:
            for file in owned:
                self.store.discard(file)

    def _queue(
        self,
        actor: Principal,
        submission_id: int,
        uploads: list[Upload],
        files: list[StagedFile],
        checked: list[Checked],
    ) -> list[int]:
        """The probe image rows and their jobs of uploads now in the store, in one audited transaction."""
        digests = [file.sha256 for file in files]
        rows = [
            {
                "submission_id": submission_id,
                "file_name": upload.file_name[:255],
                "sha256": file.sha256,
                "size_bytes": file.size,
                **upload.provenance.model_dump(),  # its fields are the probe image's provenance columns
                "width": check.width,
                "height": check.height,
                "media": check.media,
                "duration_s": check.clip.duration_s if check.clip is not None else None,
                "clip": check.clip.to_dict() if check.clip is not None else None,
                "status": "queued",
            }
            for upload, file, check in zip(uploads, files, checked, strict=True)
        ]
        with self.factory() as session, session.begin():
            # A still or clip already in the submission (the same bytes, sent twice) is not stored or
            # processed again: the upload names the image it already is.
            known: dict[str, int] = dict(
                session.execute(
                    select(ProbeImage.sha256, ProbeImage.id).where(
                        ProbeImage.submission_id == submission_id,
                        ProbeImage.sha256.in_(set(digests)),
                        ProbeImage.status != "failed",
                    )
                ).all()
            )
            fresh: list[int] = []  # positions of the uploads that are new
            for position, digest in enumerate(digests):
                if digest not in known:
                    known[digest] = -1  # taken by this upload
                    fresh.append(position)
            new_ids: list[int] = []
            if fresh:
                # Bulk inserts: the images (their ids come back in upload order), then one job each.
                returning = insert(ProbeImage).returning(ProbeImage.id, sort_by_parameter_order=True)
                new_ids = [int(i) for i in session.scalars(returning, [rows[p] for p in fresh]).all()]
                session.execute(insert(Job), [{"probe_image_id": i, "status": "queued"} for i in new_ids])
            known |= {digests[p]: i for p, i in zip(fresh, new_ids, strict=True)}
            clips = [i for p, i in zip(fresh, new_ids, strict=True) if checked[p].clip is not None]
            repeated = set(range(len(digests))) - set(fresh)
            duplicates = [{"file": uploads[p].file_name[:255], "image_id": known[digests[p]]} for p in sorted(repeated)]
            audit.append(
                session,
                actor,
                "images_uploaded",
                "submission",
                submission_id,
                image_ids=new_ids,
                image_sha256=[digests[p] for p in fresh],
                **({"clip_ids": clips} if clips else {}),
                **({"duplicates": duplicates} if duplicates else {}),
            )
        return [known[digest] for digest in digests]

    def add_rejected(
        self,
        actor: Principal,
        submission_id: int,
        file_name: str,
        data: bytes | StagedFile,
        code: str,
        message: str,
        provenance: ProbeProvenance | None = None,
    ) -> int:
        """Record a file that could not be accepted as a failed image, with the provenance it came with,
        so nothing submitted is lost silently (a staged file is known by its digest and size; it need
        not exist any more)."""
        sha256, size = (data.sha256, data.size) if isinstance(data, StagedFile) else (sha256_bytes(data), len(data))
        with self.factory() as session, session.begin():
            visible_submission(session, actor, submission_id)
            image = ProbeImage(
                submission_id=submission_id,
                file_name=file_name[:255],
                sha256=sha256,
                size_bytes=size,
                **(provenance or ProbeProvenance()).model_dump(),
                status="failed",
                error_code=code,
                error_message=message[:2000],
                processed_at=datetime.now(UTC),
            )
            session.add(image)
            session.flush()
            audit.append(
                session,
                actor,
                "image_rejected",
                "submission",
                submission_id,
                image_id=image.id,
                image_sha256=image.sha256,
                code=code,
            )
            return int(image.id)

    @staticmethod
    def _summary_fields(
        session: Session, submission: Submission, footage: dict[int, tuple[float, float]] | None = None
    ) -> dict[str, Any]:
        counts = dict(
            session.execute(
                select(ProbeImage.status, func.count())
                .where(ProbeImage.submission_id == submission.id)
                .group_by(ProbeImage.status)
            ).all()
        )
        total = sum(counts.values())
        finished = counts.get("done", 0) + counts.get("failed", 0)
        footage = _footage(session, submission.id) if footage is None else footage
        if total == 0:
            status = "open"
        elif finished == total:
            status = "complete"
        elif finished == 0 and counts.get("processing", 0) == 0:
            status = "queued"
        else:
            status = "processing"
        return {
            "id": submission.id,
            "case_reference": submission.case_reference,
            "purpose": submission.purpose,
            "submitted_by": submission.submitted_by,
            "search_poor_faces": submission.search_poor_faces,
            "pack_id": submission.pack_id,
            "created_at": submission.created_at,
            "status": status,
            "progress": Progress(
                total=total,
                **{s: int(counts.get(s, 0)) for s in IMAGE_STATUSES},
                footage_s=round(sum(length for length, _ in footage.values()), 3),
                footage_done_s=round(sum(done for _, done in footage.values()), 3),
            ),
        }

    def list_visible(self, actor: Principal, limit: int = 100, offset: int = 0) -> list[SubmissionSummary]:
        with read_session(self.factory) as session:
            query = select(Submission).order_by(Submission.id.desc()).limit(limit).offset(offset)
            if not actor.reads_everything:
                query = query.where(Submission.submitted_by == actor.username)
            return [SubmissionSummary(**self._summary_fields(session, s)) for s in session.scalars(query).all()]

    def get(self, actor: Principal, submission_id: int) -> SubmissionDetail:
        """Progress and every image's status with its provenance."""
        with read_session(self.factory) as session:
            submission = visible_submission(session, actor, submission_id)
            footage = _footage(session, submission_id)
            images = [ProbeImageStatus(**_image_fields(image, footage)) for image in submission.images]
            return SubmissionDetail(**self._summary_fields(session, submission, footage), images=images)

    def results(self, actor: Principal, submission_id: int) -> SubmissionResults:
        """Every image's faces and candidates; the view is recorded in the audit trail (R1)."""
        with self.factory() as session, session.begin():
            submission = visible_submission(session, actor, submission_id)
            audit.append(
                session, actor, "results_viewed", "submission", submission_id, case_reference=submission.case_reference
            )
            images = session.scalars(
                select(ProbeImage)
                .where(ProbeImage.submission_id == submission_id)
                .order_by(ProbeImage.id)
                .options(*_WITH_RESULTS)
            ).all()
            persons = session.scalars(
                select(ProbePerson)
                .where(ProbePerson.submission_id == submission_id)
                .order_by(ProbePerson.id)
                .options(
                    selectinload(ProbePerson.faces),
                    selectinload(ProbePerson.candidates).selectinload(PersonCandidate.subject),
                )
            ).all()
            footage = _footage(session, submission_id)
            by_id = {image.id: image for image in images}
            return SubmissionResults(
                **self._summary_fields(session, submission, footage),
                images=[_image_result(image, footage) for image in images],
                persons=[_person(person, by_id) for person in persons],
            )

    def face_in_context(self, actor: Principal, face_id: int) -> FaceInContext:
        """One face and its still, read alone (not the whole submission's results); the view is audited."""
        with self.factory() as session, session.begin():
            face = session.get(ProbeFace, face_id)
            image = session.get(ProbeImage, face.probe_image_id, options=_WITH_RESULTS) if face is not None else None
            if image is None:
                raise NotFound(f"probe face {face_id} not found")
            submission = visible_submission(session, actor, image.submission_id)
            audit.append(
                session,
                actor,
                "face_viewed",
                "probe_face",
                face_id,
                submission=submission.id,
                case_reference=submission.case_reference,
            )
            result = _image_result(image, _footage(session, submission.id, [image.id]))
            return FaceInContext(
                submission_id=submission.id,
                case_reference=submission.case_reference,
                image=result,
                face=next(f for f in result.faces if f.id == face_id),
            )

    def person_in_context(self, actor: Principal, person_id: int) -> PersonInContext:
        """One person of an incident with the stills (or the clip) of its faces, read alone; audited."""
        with self.factory() as session, session.begin():
            person = session.get(
                ProbePerson,
                person_id,
                options=[
                    selectinload(ProbePerson.faces),
                    selectinload(ProbePerson.candidates).selectinload(PersonCandidate.subject),
                ],
            )
            if person is None:
                raise NotFound(f"person {person_id} not found")
            submission = visible_submission(session, actor, person.submission_id)
            audit.append(
                session,
                actor,
                "person_viewed",
                "probe_person",
                person_id,
                submission=submission.id,
                case_reference=submission.case_reference,
            )
            image_ids = {face.probe_image_id for face in person.faces}
            if person.clip_image_id is not None:
                image_ids.add(person.clip_image_id)
            images = session.scalars(
                select(ProbeImage).where(ProbeImage.id.in_(image_ids)).order_by(ProbeImage.id).options(*_WITH_RESULTS)
            ).all()
            footage = _footage(session, submission.id, sorted(image_ids))
            return PersonInContext(
                submission_id=submission.id,
                case_reference=submission.case_reference,
                person=_person(person, {image.id: image for image in images}),
                images=[_image_result(image, footage) for image in images],
            )


# A probe image with its faces, their candidates and the candidates' records, loaded in three queries.
_WITH_RESULTS = (selectinload(ProbeImage.faces).selectinload(ProbeFace.candidates).selectinload(Candidate.subject),)


def _image_result(image: ProbeImage, footage: dict[int, tuple[float, float]]) -> ProbeImageResult:
    """A probe image (loaded ``_WITH_RESULTS``) with every face on it and their candidates."""
    return ProbeImageResult(
        **_image_fields(image, footage),
        width=image.width,
        height=image.height,
        faces=[_stored_face(face, image) for face in image.faces],
    )


def _footage(
    session: Session, submission_id: int, image_ids: Sequence[int] | None = None
) -> dict[int, tuple[float, float]]:
    """Each clip's (of the submission, or of ``image_ids`` in it) seconds of footage and seconds
    processed: all of a finished clip's, else its stored segments'."""
    query = select(ProbeImage.id, ProbeImage.duration_s, ProbeImage.status).where(
        ProbeImage.submission_id == submission_id, ProbeImage.media == CLIP
    )
    if image_ids is not None:
        query = query.where(ProbeImage.id.in_(image_ids))
    clips = session.execute(query).all()
    if not clips:
        return {}
    spans = dict(
        session.execute(
            select(ClipSegment.probe_image_id, func.sum(ClipSegment.end_s - ClipSegment.start_s))
            .where(ClipSegment.probe_image_id.in_([i for i, _, _ in clips]))
            .group_by(ClipSegment.probe_image_id)
        ).all()
    )
    footage = {}
    for image_id, duration, status in clips:
        length = float(duration or 0.0)
        done = length if status in ("done", "failed") else min(length, float(spans.get(image_id) or 0.0))
        footage[int(image_id)] = (length, done)
    return footage


def _image_fields(image: ProbeImage, footage: dict[int, tuple[float, float]]) -> dict[str, Any]:
    """A probe image's status and provenance (R8), and a clip's facts and progress."""
    clip = None
    if image.media == CLIP and image.clip is not None:
        clip = ClipOut(**image.clip, done_s=round(footage.get(image.id, (0.0, 0.0))[1], 3))
    return {
        "id": image.id,
        "file": image.file_name,
        "media": image.media,
        "clip": clip,
        "status": image.status,
        "error": ImageError(code=image.error_code, message=image.error_message) if image.error_code else None,
        "retailer": image.retailer,
        "store": image.store,
        "incident_reference": image.incident_reference,
        "captured_at": image.captured_at,
        "supplied_by": image.supplied_by,
        "witness_statement": image.witness_statement,
        "camera": image.camera,
    }


def _review_info(row: ProbeFace | ProbePerson) -> ReviewInfo:
    """Where a face's or a person's review stands (both carry the same review columns)."""
    return ReviewInfo(
        state=row.review_state,
        version=row.review_version,
        outcome=row.review_outcome,
        candidate_id=row.review_candidate_id,
        first_reviewer=row.first_reviewer,
    )


def _track(person: ProbePerson, images: dict[int, ProbeImage]) -> TrackOut | None:
    clip = images.get(person.clip_image_id) if person.clip_image_id is not None else None
    if clip is None:
        return None
    return TrackOut(
        image_id=clip.id,
        file=clip.file_name,
        start_s=round(person.start_s or 0.0, 3),
        end_s=round(person.end_s or 0.0, 3),
        shots=[
            ShotOut(time_s=face.time_s, face=face.id, captured_at=shot_captured_at(clip.captured_at, face.time_s))
            for face in sorted(person.faces, key=lambda f: f.time_s or 0.0)
            if face.time_s is not None
        ],
    )


def _person(person: ProbePerson, images: dict[int, ProbeImage]) -> PersonOut:
    return PersonOut(
        track=_track(person, images),
        id=person.id,
        incident_reference=person.incident_reference,
        faces=[face.id for face in person.faces],
        searched=person.searched,
        fusion=person.fusion,
        threshold=person.threshold,
        review=_review_info(person),
        candidates=[
            PersonCandidateOut(
                id=c.id,
                rank=c.rank,
                custody_reference=c.subject.custody_reference,
                subject_id=c.subject_id,
                score=round(c.score, 4),
                above_threshold=c.above_threshold,
                best_face_id=c.best_face_id,
                best_face_score=round(c.best_face_score, 4),
            )
            for c in person.candidates
        ],
    )


def _stored_face(face: ProbeFace, image: ProbeImage) -> StoredFaceOut:
    return StoredFaceOut(
        id=face.id,
        time_s=face.time_s,
        captured_at=shot_captured_at(image.captured_at, face.time_s) if face.time_s is not None else None,
        face_index=face.face_index,
        box=face.box,
        landmarks=face.landmarks,
        det_score=face.det_score,
        quality=Quality(score=face.quality_score, usable=face.usable, reasons=face.reasons),
        searched=face.searched,
        poor_face_override=face.poor_face_override,
        threshold=face.threshold,
        review=_review_info(face),
        candidates=[
            CandidateOut(
                id=c.id,
                rank=c.rank,
                custody_reference=c.subject.custody_reference,
                subject_id=c.subject_id,
                template_id=c.template_id,
                score=round(c.score, 4),
                above_threshold=c.above_threshold,
            )
            for c in face.candidates
        ],
    )
