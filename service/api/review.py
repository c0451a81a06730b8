"""Review over HTTP (R3): decisions on probe faces and persons, the queue, the sprint report and disclosure."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import Allowed, RuntimeDep
from service.api.errors import ERRORS
from service.api.schemas import DecisionRequest, DisclosureRequest, Id, SearchAnywayRequest
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.services.views import (
    DecisionHistoryItem,
    DecisionOut,
    Disclosure,
    PersonDecisionOut,
    QueueItem,
    SprintReport,
    StoredSearch,
)

router = APIRouter(responses=ERRORS, tags=["review"])

Reviewer = Annotated[Principal, Allowed(P.REVIEW, P.CONFIRM)]
Reader = Annotated[Principal, Allowed(P.READ_OWN_SUBMISSIONS, P.READ_ALL_SUBMISSIONS)]


@router.post("/faces/{face_id}/decisions", response_model=DecisionOut)
def decide(rt: RuntimeDep, actor: Reviewer, face_id: Id, body: DecisionRequest) -> DecisionOut:
    """Record a decision on a probe face (see the workflow in the README); 409 on a conflict."""
    return rt.review.decide(
        actor, face_id, body.action, body.outcome, body.candidate_id, body.note, body.expected_version
    )


@router.post("/faces/{face_id}/search", response_model=StoredSearch)
def search_anyway(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.OVERRIDE_THRESHOLD)],
    face_id: Id,
    body: SearchAnywayRequest,
) -> StoredSearch:
    """Search a face the quality gate held back ("search anyway", a confirmer's recorded override);
    its candidates then enter the review queue. 409 if it has been searched."""
    return rt.search.search_held_back_face(actor, face_id, body.reason)


@router.post("/persons/{person_id}/decisions", response_model=PersonDecisionOut)
def decide_person(rt: RuntimeDep, actor: Reviewer, person_id: Id, body: DecisionRequest) -> PersonDecisionOut:
    """Record one decision on a person of an incident (its candidate ids are person candidate ids); every
    member face records it. 409 on a conflict."""
    return rt.review.decide_person(
        actor, person_id, body.action, body.outcome, body.candidate_id, body.note, body.expected_version
    )


@router.get("/faces/{face_id}/decisions", response_model=list[DecisionHistoryItem])
def decision_history(rt: RuntimeDep, _: Reviewer, face_id: Id) -> list[DecisionHistoryItem]:
    return rt.review.history(face_id)


@router.get("/review/queue", response_model=list[QueueItem])
def review_queue(
    rt: RuntimeDep,
    _: Reviewer,
    state: Annotated[str, Query(pattern="^(unreviewed|awaiting_confirmation|confirmed)$")] = "unreviewed",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    above_threshold: Annotated[
        bool | None, Query(description="only faces with (true) or without (false) a candidate above the threshold")
    ] = None,
) -> list[QueueItem]:
    """Faces waiting for a decision: those with a candidate above the threshold first, then oldest first."""
    return rt.review.queue(state, limit, above_threshold)


@router.get("/submissions/{submission_id}/report", response_model=SprintReport)
def report(rt: RuntimeDep, actor: Reader, submission_id: Id) -> SprintReport:
    """The sprint's figures: supplied, with a face, usable, searched, candidates, possible, confirmed."""
    return rt.review.report(actor, submission_id)


@router.post("/submissions/{submission_id}/disclosures", response_model=Disclosure)
def disclose(
    rt: RuntimeDep, actor: Annotated[Principal, Allowed(P.DISCLOSE)], submission_id: Id, body: DisclosureRequest
) -> Disclosure:
    """Export the confirmed matches of a sprint to a named recipient (recorded with the recipient)."""
    return rt.review.disclose(actor, submission_id, body.recipient, body.reason)
