"""The custody gallery over HTTP: enrolment, records with provenance (R7), deletion on request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile

from service.api.deps import Allowed, RuntimeDep, read_upload
from service.api.errors import ERRORS
from service.api.schemas import EnrolResult, Id, Offset
from service.domain.provenance import TEXT_MAX, SubjectProvenance
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.services.views import DeletedSubject, SubjectOut

router = APIRouter(responses=ERRORS, tags=["gallery"])


@router.post("/gallery/enrol", response_model=EnrolResult)
def enrol(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.MANAGE_GALLERY)],
    file: Annotated[UploadFile, File(description="one custody image")],
    custody_reference: Annotated[str, Form(min_length=1, max_length=128)],
    source: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    lawful_basis: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    conviction_status: Annotated[str, Form(max_length=64)] = "unknown",
    under_18: Annotated[str, Form(description="yes or no (true/false, 1/0, on/off)")] = "",
    view: Annotated[
        str, Form(max_length=64, description="front, left, right, left_profile, right_profile or free text")
    ] = "",
) -> dict[str, Any]:
    """Enrol one custody image as a view of a subject's record (created on first enrolment). A turned
    view is accepted beside a front view of the same record; an unreadable file is a 422."""
    data = read_upload(file, rt.settings.images.max_bytes)
    provenance = SubjectProvenance.parse(
        {"source": source, "lawful_basis": lawful_basis, "conviction_status": conviction_status, "under_18": under_18},
        "the form fields",
    )
    outcome = rt.gallery.enrol(
        actor, custody_reference, data, file.filename or "upload", provenance, refuse_unreadable=True, view=view
    )
    return {
        "status": outcome.status,
        "custody_reference": outcome.custody_reference,
        "file_name": outcome.file_name,
        "subject_id": outcome.subject_id,
        "template_id": outcome.template_id,
        "reason_code": outcome.reason_code,
        "reason": outcome.reason,
        "quality_reasons": list(outcome.quality_reasons),
        "view": outcome.view,
    }


@router.get("/gallery/subjects", response_model=list[SubjectOut])
def list_subjects(
    rt: RuntimeDep,
    _: Annotated[Principal, Allowed(P.READ_GALLERY)],
    custody_reference: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> list[SubjectOut]:
    return rt.gallery.subjects(custody_reference, limit, offset)


@router.get("/gallery/subjects/{subject_id}", response_model=SubjectOut)
def get_subject(rt: RuntimeDep, _: Annotated[Principal, Allowed(P.READ_GALLERY)], subject_id: Id) -> SubjectOut:
    return rt.gallery.subject(subject_id)


@router.delete("/gallery/subjects/{subject_id}", response_model=DeletedSubject)
def delete_subject(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.MANAGE_GALLERY)],
    subject_id: Id,
    reason: Annotated[str, Query(max_length=500, description="why (e.g. a deletion request)")] = "",
) -> DeletedSubject:
    """Delete a subject on request: records, stored files, templates and index entries, at once."""
    return rt.gallery.delete_subject(actor, subject_id, reason)
