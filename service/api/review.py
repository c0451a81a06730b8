"""Review decisions, the sprint report, disclosures, images, the audit trail and retention."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import select

from service.api.auth import Allowed, RuntimeDep
from service.api.routes import ERRORS
from service.api.schemas import (
    AuditEventOut,
    AuditVerification,
    DecisionHistoryItem,
    DecisionOut,
    DecisionRequest,
    DisclosureRequest,
    PurgeResult,
    QueueItem,
    SprintReport,
)
from service.db.models import Candidate, CustodyImage, FaceTemplate, ProbeFace, ProbeImage
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.errors import InvalidRequest, NotFound
from service.services import audit
from service.services.review import sprint_report

router = APIRouter(responses=ERRORS)

Reviewer = Annotated[Principal, Allowed(P.REVIEW, P.CONFIRM)]
Reader = Annotated[Principal, Allowed(P.READ_OWN_SUBMISSIONS, P.READ_ALL_SUBMISSIONS)]
Auditor = Annotated[Principal, Allowed(P.READ_AUDIT)]
NO_STORE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}


@router.post("/faces/{face_id}/decisions", response_model=DecisionOut, tags=["review"])
def decide(rt: RuntimeDep, actor: Reviewer, face_id: int, body: DecisionRequest) -> dict[str, Any]:
    """Record a decision on a probe face (see the workflow in the README); 409 on a conflict."""
    return rt.review.decide(
        actor, face_id, body.action, body.outcome, body.candidate_id, body.note, body.expected_version
    )


@router.get("/faces/{face_id}/decisions", response_model=list[DecisionHistoryItem], tags=["review"])
def decision_history(rt: RuntimeDep, _: Reviewer, face_id: int) -> list[dict[str, Any]]:
    return rt.review.history(face_id)


@router.get("/review/queue", response_model=list[QueueItem], tags=["review"])
def review_queue(
    rt: RuntimeDep,
    _: Reviewer,
    state: Annotated[str, Query(pattern="^(unreviewed|awaiting_confirmation|confirmed)$")] = "unreviewed",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return rt.review.queue(state, limit)


@router.get("/submissions/{submission_id}/report", response_model=SprintReport, tags=["review"])
def report(rt: RuntimeDep, actor: Reader, submission_id: int) -> dict[str, Any]:
    """The sprint's figures: supplied, with a face, usable, searched, candidates, possible, confirmed."""
    with rt.factory() as session:
        submission = rt.submissions.visible(session, actor, submission_id)
        return sprint_report(session, submission)


@router.post("/submissions/{submission_id}/disclosures", tags=["review"])
def disclose(
    rt: RuntimeDep, actor: Annotated[Principal, Allowed(P.DISCLOSE)], submission_id: int, body: DisclosureRequest
) -> dict[str, Any]:
    """Export the confirmed matches of a sprint to a named recipient (recorded with the recipient)."""
    with rt.factory() as session, session.begin():
        submission = rt.submissions.visible(session, actor, submission_id)
        rows = session.execute(
            select(ProbeFace, ProbeImage, Candidate)
            .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
            .join(Candidate, Candidate.id == ProbeFace.review_candidate_id)
            .where(
                ProbeImage.submission_id == submission_id,
                ProbeFace.review_state == "confirmed",
                ProbeFace.review_outcome == "possible_match",
            )
        ).all()
        leads = [
            {
                "face_id": face.id,
                "file": image.file_name,
                "retailer": image.retailer,
                "store": image.store,
                "incident_reference": image.incident_reference,
                "captured_at": image.captured_at.isoformat() if image.captured_at else None,
                "custody_reference": candidate.subject.custody_reference,
                "score": round(candidate.score, 4),
            }
            for face, image, candidate in rows
        ]
        audit.append(
            session,
            actor,
            "disclosure",
            "submission",
            submission_id,
            recipient=body.recipient,
            reason=body.reason,
            case_reference=submission.case_reference,
            leads=len(leads),
            face_ids=[lead["face_id"] for lead in leads],
        )
    return {
        "submission_id": submission_id,
        "recipient": body.recipient,
        "notice": "Confirmed matches are investigative leads, not identifications.",
        "leads": leads,
    }


@router.get("/probe-images/{image_id}/image", tags=["images"], response_class=Response)
def probe_image(rt: RuntimeDep, actor: Reader, image_id: int) -> Response:
    """The stored still (signed-in, authorised users only; never cached; the view is audited)."""
    with rt.factory() as session, session.begin():
        image = session.get(ProbeImage, image_id)
        if image is None:
            raise NotFound(f"probe image {image_id} not found")
        rt.submissions.visible(session, actor, image.submission_id)
        if not rt.store.exists(image.sha256):
            raise NotFound(f"probe image {image_id} has no stored file")
        audit.append(session, actor, "probe_image_viewed", "probe_image", image_id, submission_id=image.submission_id)
        data = rt.store.get(image.sha256)
    return Response(data, media_type="application/octet-stream", headers=NO_STORE)


@router.get("/candidates/{candidate_id}/image", tags=["images"], response_class=Response)
def candidate_image(rt: RuntimeDep, actor: Reviewer, candidate_id: int) -> Response:
    """The custody image behind a candidate (its template's image; the view is audited)."""
    with rt.factory() as session, session.begin():
        candidate = session.get(Candidate, candidate_id)
        if candidate is None:
            raise NotFound(f"candidate {candidate_id} not found")
        query = select(CustodyImage).where(CustodyImage.subject_id == candidate.subject_id).order_by(CustodyImage.id)
        if candidate.template_id is not None:
            template = session.get(FaceTemplate, candidate.template_id)
            if template is not None:
                query = select(CustodyImage).where(CustodyImage.id == template.custody_image_id)
        custody = session.scalars(query).first()
        if custody is None:
            raise NotFound(f"candidate {candidate_id} has no custody image")
        audit.append(
            session,
            actor,
            "candidate_image_viewed",
            "candidate",
            candidate_id,
            subject_id=candidate.subject_id,
            probe_face_id=candidate.probe_face_id,
        )
        data = rt.store.get(custody.sha256)
    return Response(data, media_type="application/octet-stream", headers=NO_STORE)


@router.get("/audit", response_model=list[AuditEventOut], tags=["audit"])
def audit_events(
    rt: RuntimeDep,
    actor: Auditor,
    user: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    """The audit trail, filtered (auditors only)."""
    with rt.factory() as session:
        events = audit.query(
            session,
            actor=user,
            action=action,
            object_type=object_type,
            object_id=object_id,
            after_seq=after_seq,
            limit=limit,
        )
        return [audit.event_dict(e) for e in events]


@router.get("/audit/verify", response_model=AuditVerification, tags=["audit"])
def audit_verify(rt: RuntimeDep, _: Auditor) -> dict[str, Any]:
    return audit.verify(rt.factory).to_dict()


@router.get("/audit/export", tags=["audit"], response_class=StreamingResponse)
def audit_export(
    rt: RuntimeDep,
    actor: Auditor,
    recipient: Annotated[str, Query(min_length=1, max_length=500, description="who receives the export")],
    format: Annotated[str, Query(pattern="^(jsonl|csv)$")] = "jsonl",
) -> StreamingResponse:
    """Export the whole trail as JSON Lines or CSV; the export itself is recorded, with its recipient."""
    with rt.factory() as session, session.begin():
        audit.append(session, actor, "audit_export", "audit", "", recipient=recipient, format=format)
    with rt.factory() as session:
        events = audit.query(session, limit=10_000_000)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(audit.export_lines(events, format), media_type=media, headers=NO_STORE)


@router.post("/retention/purge", response_model=PurgeResult, tags=["retention"])
def purge(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.PURGE)],
    days: Annotated[float | None, Query(gt=0)] = None,
) -> dict[str, Any]:
    """Run the retention purge now (it also runs periodically in the service)."""
    if days is not None and days > 3650:
        raise InvalidRequest("days must be at most 3650")
    return rt.retention.purge(actor, days=days)
