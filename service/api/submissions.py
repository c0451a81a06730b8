"""Sprints over HTTP: create a submission, upload its stills with provenance, read progress and results."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile

from service.api.deps import Allowed, RuntimeDep, stage_uploads
from service.api.errors import ERRORS
from service.api.schemas import Id, Offset, SubmissionCreate, UploadAccepted
from service.domain.provenance import TEXT_MAX, ProbeProvenance
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.errors import InvalidRequest
from service.services.submissions import Upload
from service.services.views import (
    FaceInContext,
    PersonInContext,
    SubmissionDetail,
    SubmissionResults,
    SubmissionSummary,
)

router = APIRouter(responses=ERRORS)

Reader = Annotated[Principal, Allowed(P.READ_OWN_SUBMISSIONS, P.READ_ALL_SUBMISSIONS)]


@router.post("/submissions", response_model=SubmissionSummary, status_code=201, tags=["submissions"])
def create_submission(
    rt: RuntimeDep, actor: Annotated[Principal, Allowed(P.SUBMIT)], body: SubmissionCreate
) -> SubmissionDetail:
    """Create a sprint; then upload its stills to ``/submissions/{id}/images``."""
    submission_id = rt.submissions.create(actor, body.case_reference, body.purpose, body.search_poor_faces)
    return rt.submissions.get(actor, submission_id)


@router.get("/submissions", response_model=list[SubmissionSummary], tags=["submissions"])
def list_submissions(
    rt: RuntimeDep,
    actor: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> list[SubmissionSummary]:
    return rt.submissions.list_visible(actor, limit, offset)


def _provenance_for(name: str, index: int, defaults: ProbeProvenance, raw: str | None) -> ProbeProvenance:
    """The defaults, overridden by this file's entry of the ``provenance`` JSON (a list or keyed by name)."""
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
    return defaults.updated(entry, name)


@router.post(
    "/submissions/{submission_id}/images",
    response_model=UploadAccepted,
    status_code=202,
    tags=["submissions"],
)
def upload_images(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.SUBMIT)],
    submission_id: Id,
    files: Annotated[list[UploadFile], File(description="one or more stills or clips")],
    retailer: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    store: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    incident_reference: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    captured_at: Annotated[
        str,
        Form(
            description="ISO 8601 date or date-time; with its offset (kept in UTC), else read as UTC",
            json_schema_extra={"format": "date-time"},
        ),
    ] = "",
    supplied_by: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    witness_statement: Annotated[str, Form(description="yes or no (true/false, 1/0, on/off)")] = "",
    camera: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    provenance: Annotated[
        str | None,
        Form(description="JSON: a list (one object per file) or an object keyed by file name; overrides the fields"),
    ] = None,
) -> dict[str, Any]:
    """Upload stills and clips with provenance (a clip's ``captured_at`` is its start); they are queued
    and processed in the background, a clip in segments, its faces tracked.

    The request is all or nothing: if any file is empty, unreadable, truncated or over-size, nothing is
    stored. Each file is streamed to disk and checked from there, never held in memory whole.
    """
    fields = {
        "retailer": retailer,
        "store": store,
        "incident_reference": incident_reference,
        "captured_at": captured_at,
        "supplied_by": supplied_by,
        "witness_statement": witness_statement,
        "camera": camera,
    }
    defaults = ProbeProvenance.parse(fields, "the form fields")
    limit = max(rt.settings.images.max_bytes, rt.settings.video.max_bytes)  # each kind's own is checked after
    staged = stage_uploads(rt.store, files, limit)
    try:
        uploads = []
        for i, (upload, file) in enumerate(zip(files, staged, strict=True)):
            name = upload.filename or f"upload-{i + 1}"
            uploads.append(Upload(name, file, _provenance_for(name, i, defaults, provenance)))
    except BaseException:  # bad provenance: add_images, which owns the staged files, is never called
        for file in staged:
            rt.store.discard(file)
        raise
    ids = rt.submissions.add_images(actor, submission_id, uploads)
    return {"submission_id": submission_id, "image_ids": ids}


@router.get("/submissions/{submission_id}", response_model=SubmissionDetail, tags=["submissions"])
def get_submission(
    rt: RuntimeDep,
    actor: Reader,
    submission_id: Id,
) -> SubmissionDetail:
    return rt.submissions.get(actor, submission_id)


@router.get("/submissions/{submission_id}/results", response_model=SubmissionResults, tags=["submissions"])
def submission_results(
    rt: RuntimeDep,
    actor: Reader,
    submission_id: Id,
) -> SubmissionResults:
    """Per image and face: quality, whether searched, and the top-k candidates with scores (audited view)."""
    return rt.submissions.results(actor, submission_id)


@router.get("/faces/{face_id}", response_model=FaceInContext, tags=["submissions"])
def face_in_context(
    rt: RuntimeDep,
    actor: Reader,
    face_id: Id,
) -> FaceInContext:
    """One probe face with its candidates and its still (every face on it): what a reviewer opens
    (audited as ``face_viewed``, as the review page is)."""
    return rt.submissions.face_in_context(actor, face_id)


@router.get("/persons/{person_id}", response_model=PersonInContext, tags=["submissions"])
def person_in_context(
    rt: RuntimeDep,
    actor: Reader,
    person_id: Id,
) -> PersonInContext:
    """One person of an incident (or a clip's track) with its fused candidates and the stills of its
    faces (audited as ``person_viewed``, as the review page is)."""
    return rt.submissions.person_in_context(actor, person_id)
