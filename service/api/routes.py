"""HTTP endpoints. Handlers are plain ``def`` so FastAPI runs inference off the event loop."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from sqlalchemy import func, select

from service.api.auth import Allowed, RuntimeDep
from service.api.schemas import (
    DeletedSubject,
    EnrolResult,
    ErrorResponse,
    Health,
    SearchResult,
    SubjectOut,
    SubmissionCreate,
    SubmissionDetail,
    SubmissionResults,
    SubmissionSummary,
    UploadAccepted,
)
from service.app import Runtime
from service.db.image_store import sha256_bytes
from service.db.models import CustodyImage, FaceTemplate, Subject
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.errors import Forbidden, InvalidRequest, NotFound, PayloadTooLarge
from service.services import audit
from service.services.gallery import SubjectProvenance
from service.services.submissions import ProbeProvenance, Upload, analyse_and_search, audit_search

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "not signed in"},
    403: {"model": ErrorResponse, "description": "the role may not do this"},
    404: {"model": ErrorResponse, "description": "unknown id"},
    413: {"model": ErrorResponse, "description": "upload over the size limit"},
    422: {"model": ErrorResponse, "description": "malformed request or unreadable image"},
}

router = APIRouter(responses=ERRORS)


def read_upload(upload: UploadFile, limit: int) -> bytes:
    """Read at most ``limit`` bytes; refuse anything larger with 413."""
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{upload.filename}: exceeds the limit of {limit} bytes")
    return data


@router.get("/health", response_model=Health, tags=["service"])
def health(rt: RuntimeDep) -> dict[str, Any]:
    return {
        "status": "ok",
        "pack_id": rt.pipeline.pack_id,
        "gallery_templates": int(rt.holder.index.count),
        "index": rt.holder.open_status,
    }


# -- gallery ---------------------------------------------------------------------------------


def _subject_out(rt: Runtime, subject: Subject) -> dict[str, Any]:
    with rt.factory() as session:
        images = session.scalar(select(func.count()).where(CustodyImage.subject_id == subject.id))
        templates = session.scalar(select(func.count()).where(FaceTemplate.subject_id == subject.id))
    return {
        "id": subject.id,
        "custody_reference": subject.custody_reference,
        "source": subject.source,
        "lawful_basis": subject.lawful_basis,
        "conviction_status": subject.conviction_status,
        "under_18": subject.under_18,
        "enrolled_at": subject.enrolled_at,
        "images": int(images or 0),
        "templates": int(templates or 0),
    }


@router.post("/gallery/enrol", response_model=EnrolResult, tags=["gallery"])
def enrol(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.MANAGE_GALLERY)],
    file: Annotated[UploadFile, File(description="one custody image")],
    custody_reference: Annotated[str, Form(min_length=1, max_length=128)],
    source: Annotated[str, Form(max_length=200)] = "",
    lawful_basis: Annotated[str, Form(max_length=200)] = "",
    conviction_status: Annotated[str, Form(max_length=64)] = "unknown",
    under_18: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    """Enrol one custody image for a subject (created on first enrolment)."""
    data = read_upload(file, rt.settings.images.max_bytes)
    rt.submissions.validate(Upload(file.filename or "upload", data))
    provenance = SubjectProvenance(source, lawful_basis, conviction_status, under_18)
    outcome = rt.gallery.enrol(actor, custody_reference, data, file.filename or "upload", provenance)
    return {
        "status": outcome.status,
        "custody_reference": outcome.custody_reference,
        "file_name": outcome.file_name,
        "subject_id": outcome.subject_id,
        "template_id": outcome.template_id,
        "reason_code": outcome.reason_code,
        "reason": outcome.reason,
        "quality_reasons": list(outcome.quality_reasons),
    }


@router.get("/gallery/subjects", response_model=list[SubjectOut], tags=["gallery"])
def list_subjects(
    rt: RuntimeDep,
    _: Annotated[Principal, Allowed(P.READ_GALLERY)],
    custody_reference: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    with rt.factory() as session:
        query = select(Subject).order_by(Subject.id).limit(limit).offset(offset)
        if custody_reference:
            query = query.where(Subject.custody_reference == custody_reference)
        subjects = session.scalars(query).all()
    return [_subject_out(rt, s) for s in subjects]


@router.get("/gallery/subjects/{subject_id}", response_model=SubjectOut, tags=["gallery"])
def get_subject(rt: RuntimeDep, _: Annotated[Principal, Allowed(P.READ_GALLERY)], subject_id: int) -> dict[str, Any]:
    with rt.factory() as session:
        subject = session.get(Subject, subject_id)
    if subject is None:
        raise NotFound(f"subject {subject_id} not found")
    return _subject_out(rt, subject)


@router.delete("/gallery/subjects/{subject_id}", response_model=DeletedSubject, tags=["gallery"])
def delete_subject(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.MANAGE_GALLERY)],
    subject_id: int,
    reason: Annotated[str, Query(max_length=500, description="why (e.g. a deletion request)")] = "",
) -> dict[str, Any]:
    """Delete a subject on request: records, stored files, templates and index entries, at once."""
    return {"subject_id": subject_id, **rt.gallery.delete_subject(actor, subject_id, reason)}


# -- submissions -----------------------------------------------------------------------------


@router.post("/submissions", response_model=SubmissionSummary, status_code=201, tags=["submissions"])
def create_submission(
    rt: RuntimeDep, actor: Annotated[Principal, Allowed(P.SUBMIT)], body: SubmissionCreate
) -> dict[str, Any]:
    """Create a sprint; then upload its stills to ``/submissions/{id}/images``."""
    submission_id = rt.submissions.create(actor, body.case_reference, body.purpose, body.search_poor_faces)
    return rt.submissions.get(actor, submission_id)


@router.get("/submissions", response_model=list[SubmissionSummary], tags=["submissions"])
def list_submissions(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.READ_OWN_SUBMISSIONS, P.READ_ALL_SUBMISSIONS)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    return rt.submissions.list_visible(actor, limit, offset)


def _provenance_for(name: str, index: int, defaults: ProbeProvenance, raw: str | None) -> ProbeProvenance:
    if not raw:
        return defaults
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"provenance is not valid JSON: {exc.msg}") from exc
    entry: Any = None
    if isinstance(parsed, list):
        entry = parsed[index] if index < len(parsed) else None
    elif isinstance(parsed, dict):
        entry = parsed.get(name)
    else:
        raise InvalidRequest("provenance must be a JSON list (one per file) or an object keyed by file name")
    if entry is None:
        return defaults
    if not isinstance(entry, dict):
        raise InvalidRequest(f"provenance for {name} must be an object")
    allowed = {"retailer", "store", "incident_reference", "captured_at", "supplied_by", "witness_statement"}
    unknown = set(entry) - allowed
    if unknown:
        raise InvalidRequest(f"unknown provenance fields for {name}: {sorted(unknown)}")
    captured = entry.get("captured_at", defaults.captured_at)
    if isinstance(captured, str):
        try:
            captured = datetime.fromisoformat(captured)
        except ValueError as exc:
            raise InvalidRequest(f"captured_at for {name} is not an ISO 8601 date-time") from exc
    return ProbeProvenance(
        retailer=str(entry.get("retailer", defaults.retailer)),
        store=str(entry.get("store", defaults.store)),
        incident_reference=str(entry.get("incident_reference", defaults.incident_reference)),
        captured_at=captured,
        supplied_by=str(entry.get("supplied_by", defaults.supplied_by)),
        witness_statement=bool(entry.get("witness_statement", defaults.witness_statement)),
    )


@router.post(
    "/submissions/{submission_id}/images",
    response_model=UploadAccepted,
    status_code=202,
    tags=["submissions"],
)
def upload_images(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.SUBMIT)],
    submission_id: int,
    files: Annotated[list[UploadFile], File(description="one or more stills")],
    retailer: Annotated[str, Form(max_length=200)] = "",
    store: Annotated[str, Form(max_length=200)] = "",
    incident_reference: Annotated[str, Form(max_length=200)] = "",
    captured_at: Annotated[datetime | None, Form()] = None,
    supplied_by: Annotated[str, Form(max_length=200)] = "",
    witness_statement: Annotated[bool, Form()] = False,
    provenance: Annotated[
        str | None,
        Form(description="JSON: a list (one object per file) or an object keyed by file name; overrides the fields"),
    ] = None,
) -> dict[str, Any]:
    """Upload stills with provenance; they are queued and processed in the background.

    The request is all or nothing: if any file is empty, unreadable or over-size, nothing is stored.
    """
    defaults = ProbeProvenance(retailer, store, incident_reference, captured_at, supplied_by, witness_statement)
    uploads = []
    for i, upload in enumerate(files):
        name = upload.filename or f"upload-{i + 1}"
        data = read_upload(upload, rt.settings.images.max_bytes)
        uploads.append(Upload(name, data, _provenance_for(name, i, defaults, provenance)))
    ids = rt.submissions.add_images(actor, submission_id, uploads)
    return {"submission_id": submission_id, "image_ids": ids}


@router.get("/submissions/{submission_id}", response_model=SubmissionDetail, tags=["submissions"])
def get_submission(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.READ_OWN_SUBMISSIONS, P.READ_ALL_SUBMISSIONS)],
    submission_id: int,
) -> dict[str, Any]:
    return rt.submissions.get(actor, submission_id)


@router.get("/submissions/{submission_id}/results", response_model=SubmissionResults, tags=["submissions"])
def submission_results(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.READ_OWN_SUBMISSIONS, P.READ_ALL_SUBMISSIONS)],
    submission_id: int,
) -> dict[str, Any]:
    """Per image and face: quality, whether searched, and the top-k candidates with scores (audited view)."""
    return rt.submissions.results(actor, submission_id)


# -- one-off search --------------------------------------------------------------------------


@router.post("/search", response_model=SearchResult, tags=["search"])
def search(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.SEARCH)],
    file: Annotated[UploadFile, File(description="one still")],
    case_reference: Annotated[str, Form(min_length=1, max_length=128)],
    purpose: Annotated[str, Form(min_length=1, max_length=2000)],
    search_poor_faces: Annotated[bool, Form()] = False,
    threshold: Annotated[
        float | None, Form(ge=0.0, le=1.0, description="below the pack's threshold needs the confirmer role")
    ] = None,
    override_reason: Annotated[str, Form(max_length=2000)] = "",
) -> dict[str, Any]:
    """Search one still synchronously: every face, its quality, and its candidates (audited)."""
    data = read_upload(file, rt.settings.images.max_bytes)
    return search_still(rt, actor, data, case_reference, purpose, search_poor_faces, threshold, override_reason)


def search_still(
    rt: Runtime,
    actor: Principal,
    data: bytes,
    case_reference: str,
    purpose: str,
    search_poor_faces: bool = False,
    threshold: float | None = None,
    override_reason: str = "",
) -> dict[str, Any]:
    """One-off search; a threshold below the pack's needs a confirmer and a reason (R4), recorded."""
    pack_threshold = rt.searcher.threshold
    used = pack_threshold if threshold is None else threshold
    if used < pack_threshold:
        if not actor.can(P.OVERRIDE_THRESHOLD):
            raise Forbidden(f"a threshold below the pack's {pack_threshold} needs the confirmer role")
        if not override_reason.strip():
            raise InvalidRequest("a threshold override needs a reason")
    image = rt.pipeline.decode(data)
    outcomes = analyse_and_search(rt.pipeline, rt.searcher, rt.factory, image, search_poor_faces, used)
    with rt.factory() as session, session.begin():
        digest = sha256_bytes(data)
        if used != pack_threshold:
            audit.append(
                session,
                actor,
                "threshold_override",
                "search",
                digest,
                pack=rt.pipeline.pack_id,
                pack_threshold=pack_threshold,
                threshold=used,
                reason=override_reason.strip(),
            )
        audit_search(
            session,
            actor,
            digest,
            outcomes,
            case_reference=case_reference,
            purpose=purpose,
            probe_sha256=digest,
            pack=rt.pipeline.pack_id,
            threshold=used,
        )
    return {
        "pack_id": rt.pipeline.pack_id,
        "threshold": used,
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "faces": [o.to_dict(i) for i, o in enumerate(outcomes)],
    }
