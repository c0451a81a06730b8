"""Sprints: create a submission, upload its stills with provenance, read progress and results."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from service.db.engine import read_session
from service.db.image_store import ImageStore, sha256_bytes
from service.db.models import Candidate, Job, ProbeFace, ProbeImage, Submission
from service.domain.faces import FaceRecord
from service.domain.roles import Principal
from service.embeddings.pipeline import FacePipeline
from service.errors import InvalidRequest, NotFound, PayloadTooLarge, ServiceError
from service.services import audit
from service.services.search import CandidateHit, GallerySearcher

IMAGE_STATUSES = ("queued", "processing", "done", "failed")


@dataclass(frozen=True, slots=True)
class ProbeProvenance:
    """What R8 asks to keep on every probe."""

    retailer: str = ""
    store: str = ""
    incident_reference: str = ""
    captured_at: datetime | None = None
    supplied_by: str = ""
    witness_statement: bool = False


@dataclass(frozen=True, slots=True)
class Upload:
    file_name: str
    data: bytes
    provenance: ProbeProvenance = field(default_factory=ProbeProvenance)


@dataclass(frozen=True, slots=True)
class FaceOutcome:
    record: FaceRecord
    searched: bool
    override: bool
    candidates: list[CandidateHit]

    def to_dict(self, index: int) -> dict[str, Any]:
        return {
            "face_index": index,
            **self.record.to_dict(),
            "searched": self.searched,
            "poor_face_override": self.override,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def analyse_and_search(
    pipeline: FacePipeline,
    searcher: GallerySearcher,
    factory: sessionmaker[Session],
    image: NDArray[np.uint8],
    search_poor_faces: bool,
    threshold: float | None = None,
) -> list[FaceOutcome]:
    """Every face of one decoded still with its quality verdict; usable faces (or all, on override) searched.

    Inference runs outside any database transaction; only the candidate look-up uses one.
    """
    faces = pipeline.analyse(image).faces
    to_search = [i for i, f in enumerate(faces) if f.quality.usable or search_poor_faces]
    hits: dict[int, list[CandidateHit]] = {}
    if to_search:
        queries = np.stack([faces[i].embedding for i in to_search])
        found_all = searcher.search(queries, pipeline.pack_id, threshold=threshold)
        for i, found in zip(to_search, found_all, strict=True):
            hits[i] = found
    return [
        FaceOutcome(
            record=face,
            searched=i in hits,
            override=i in hits and not face.quality.usable,
            candidates=hits.get(i, []),
        )
        for i, face in enumerate(faces)
    ]


def audit_search(
    session: Session,
    actor: Principal,
    object_id: object,
    outcomes: list[FaceOutcome],
    *,
    case_reference: str,
    purpose: str,
    probe_sha256: str,
    pack: str,
    threshold: float,
    **extra: Any,
) -> None:
    """Record a search as R1 asks: who, role, purpose, case, probe hash, pack, threshold, candidates."""
    searched = [o for o in outcomes if o.searched]
    audit.append(
        session,
        actor,
        "search",
        "probe_image",
        object_id,
        **extra,
        case_reference=case_reference,
        purpose=purpose,
        probe_sha256=probe_sha256,
        pack=pack,
        threshold=threshold,
        faces_searched=len(searched),
        poor_face_override=any(o.override for o in searched),
        candidates_returned=sum(len(o.candidates) for o in searched),
        candidate_subject_ids=sorted({c.subject_id for o in searched for c in o.candidates}),
    )


class SubmissionService:
    def __init__(
        self, factory: sessionmaker[Session], pipeline: FacePipeline, store: ImageStore, max_bytes: int
    ) -> None:
        self.factory = factory
        self.pipeline = pipeline
        self.store = store
        self.max_bytes = max_bytes

    def create(self, actor: Principal, case_reference: str, purpose: str, search_poor_faces: bool = False) -> int:
        if not case_reference.strip() or not purpose.strip():
            raise InvalidRequest("case_reference and purpose are required")
        with self.factory() as session, session.begin():
            submission = Submission(
                case_reference=case_reference.strip(),
                purpose=purpose.strip(),
                submitted_by=actor.username,
                submitted_role=str(actor.role),
                search_poor_faces=search_poor_faces,
                pack_id=self.pipeline.pack_id,
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

    def visible(self, session: Session, actor: Principal, submission_id: int) -> Submission:
        """The submission if ``actor`` may see it; analysts see only their own (404 otherwise)."""
        submission = session.get(Submission, submission_id)
        if submission is None or not (actor.reads_everything or submission.submitted_by == actor.username):
            raise NotFound(f"submission {submission_id} not found")
        return submission

    def validate(self, upload: Upload) -> tuple[int, int]:
        """Refuse an upload that is over-size or not a decodable image; returns its size."""
        if len(upload.data) > self.max_bytes:
            raise PayloadTooLarge(
                f"{upload.file_name}: {len(upload.data)} bytes exceeds the limit of {self.max_bytes} bytes"
            )
        try:
            image = self.pipeline.decode(upload.data)
        except ServiceError as exc:
            raise type(exc)(f"{upload.file_name}: {exc.message}") from exc
        return int(image.shape[1]), int(image.shape[0])

    def add_images(self, actor: Principal, submission_id: int, uploads: list[Upload]) -> list[int]:
        """Store every upload and queue it, or (if any is bad) store none of them."""
        if not uploads:
            raise InvalidRequest("no images in the request")
        with read_session(self.factory) as session:
            submission = self.visible(session, actor, submission_id)
            if submission.submitted_by != actor.username:
                raise NotFound(f"submission {submission_id} not found")
        sizes = [self.validate(upload) for upload in uploads]
        digests = [self.store.put(upload.data) for upload in uploads]
        rows = [
            {
                "submission_id": submission_id,
                "file_name": upload.file_name[:255],
                "sha256": digest,
                "size_bytes": len(upload.data),
                **asdict(upload.provenance),  # its fields are the probe image's provenance columns
                "width": width,
                "height": height,
                "status": "queued",
            }
            for upload, digest, (width, height) in zip(uploads, digests, sizes, strict=True)
        ]
        with self.factory() as session, session.begin():
            # Bulk inserts: the images (their ids come back in upload order), then one job each.
            returning = insert(ProbeImage).returning(ProbeImage.id, sort_by_parameter_order=True)
            ids = [int(i) for i in session.scalars(returning, rows).all()]
            session.execute(insert(Job), [{"probe_image_id": i, "status": "queued"} for i in ids])
            audit.append(
                session, actor, "images_uploaded", "submission", submission_id, image_ids=ids, image_sha256=digests
            )
        return ids

    def add_rejected(
        self, actor: Principal, submission_id: int, file_name: str, data: bytes, code: str, message: str
    ) -> int:
        """Record a file that could not be accepted as a failed image, so nothing submitted is lost silently."""
        with self.factory() as session, session.begin():
            self.visible(session, actor, submission_id)
            image = ProbeImage(
                submission_id=submission_id,
                file_name=file_name[:255],
                sha256=sha256_bytes(data),
                size_bytes=len(data),
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
    def _summary(session: Session, submission: Submission) -> dict[str, Any]:
        counts = dict(
            session.execute(
                select(ProbeImage.status, func.count())
                .where(ProbeImage.submission_id == submission.id)
                .group_by(ProbeImage.status)
            ).all()
        )
        total = sum(counts.values())
        finished = counts.get("done", 0) + counts.get("failed", 0)
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
            "created_at": submission.created_at.isoformat(),
            "status": status,
            "progress": {"total": total, **{s: int(counts.get(s, 0)) for s in IMAGE_STATUSES}},
        }

    def list_visible(self, actor: Principal, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        with read_session(self.factory) as session:
            query = select(Submission).order_by(Submission.id.desc()).limit(limit).offset(offset)
            if not actor.reads_everything:
                query = query.where(Submission.submitted_by == actor.username)
            return [self._summary(session, s) for s in session.scalars(query).all()]

    def get(self, actor: Principal, submission_id: int) -> dict[str, Any]:
        with read_session(self.factory) as session:
            submission = self.visible(session, actor, submission_id)
            summary = self._summary(session, submission)
            summary["images"] = [
                {
                    "id": image.id,
                    "file": image.file_name,
                    "status": image.status,
                    "error": {"code": image.error_code, "message": image.error_message} if image.error_code else None,
                    **_provenance(image),
                }
                for image in submission.images
            ]
            return summary

    def results(self, actor: Principal, submission_id: int) -> dict[str, Any]:
        """Every image's faces and candidates; the view is recorded in the audit trail (R1)."""
        with self.factory() as session, session.begin():
            submission = self.visible(session, actor, submission_id)
            audit.append(
                session, actor, "results_viewed", "submission", submission_id, case_reference=submission.case_reference
            )
            summary = self._summary(session, submission)
            images = session.scalars(
                select(ProbeImage)
                .where(ProbeImage.submission_id == submission_id)
                .order_by(ProbeImage.id)
                .options(
                    selectinload(ProbeImage.faces).selectinload(ProbeFace.candidates).selectinload(Candidate.subject)
                )
            ).all()
            summary["images"] = [
                {
                    "id": image.id,
                    "file": image.file_name,
                    "status": image.status,
                    "error": {"code": image.error_code, "message": image.error_message} if image.error_code else None,
                    **_provenance(image),
                    "faces": [_face_dict(face) for face in image.faces],
                }
                for image in images
            ]
            return summary


def _provenance(image: ProbeImage) -> dict[str, Any]:
    return {
        "retailer": image.retailer,
        "store": image.store,
        "incident_reference": image.incident_reference,
        "captured_at": image.captured_at.isoformat() if image.captured_at else None,
        "supplied_by": image.supplied_by,
        "witness_statement": image.witness_statement,
    }


def _face_dict(face: ProbeFace) -> dict[str, Any]:
    return {
        "id": face.id,
        "face_index": face.face_index,
        "box": face.box,
        "landmarks": face.landmarks,
        "det_score": face.det_score,
        "quality": {"score": face.quality_score, "usable": face.usable, "reasons": face.reasons},
        "searched": face.searched,
        "poor_face_override": face.poor_face_override,
        "threshold": face.threshold,
        "review": {
            "state": face.review_state,
            "version": face.review_version,
            "outcome": face.review_outcome,
            "candidate_id": face.review_candidate_id,
            "first_reviewer": face.first_reviewer,
        },
        "candidates": [
            {
                "id": c.id,
                "rank": c.rank,
                "custody_reference": c.subject.custody_reference,
                "subject_id": c.subject_id,
                "template_id": c.template_id,
                "score": round(c.score, 4),
                "above_threshold": c.above_threshold,
            }
            for c in face.candidates
        ],
    }
