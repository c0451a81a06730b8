"""The prolific-offender picture over HTTP: unknown groups, subjects' appearances, the ranking."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from service.api.deps import Allowed, RuntimeDep
from service.api.errors import ERRORS
from service.api.schemas import BodyId, Id, Offset, Version
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.services.linking import models as read

router = APIRouter(responses=ERRORS)

ProlificReader = Annotated[Principal, Allowed(P.READ_PROLIFIC)]
GroupReviewer = Annotated[Principal, Allowed(P.REVIEW, P.CONFIRM)]


class Spread(BaseModel):
    incidents: int = Field(description="distinct incidents (retailer + incident reference; else submission + store)")
    retailers: int
    stores: int
    first_seen: datetime | None
    last_seen: datetime | None


class Appearance(BaseModel):
    face_id: int
    submission: int
    case_reference: str
    image_id: int
    file: str
    retailer: str
    store: str
    incident_reference: str
    captured_at: datetime | None
    seen_at: datetime | None = Field(description="capture time, else the submission's time")
    incident: list[str] = Field(description="the key that makes appearances one incident")
    score: float | None = Field(
        default=None,
        description="subject: the candidate's cosine to the custody image; group: the face's mean cosine to "
        "the group's other faces",
    )
    candidate_id: int | None = None


class GroupFace(Appearance):
    quality: float
    linked_score: float | None = Field(description="mean cosine to the group when it joined (None: it started it)")
    nearest_face_id: int | None
    nearest_score: float | None
    linked_by: str = Field(description="auto, or the reviewer who put it there")
    reason: str = Field(description="unmatched | no_match | split | merge")
    linked_at: datetime | None


class GroupOut(Spread):
    group: int
    kind: str = "group"
    id: int
    status: str = Field(description="open | confirmed")
    size: int
    version: int = Field(description="send back as expected_version with a decision")
    representative_face_id: int | None
    confirmed_by: str | None
    created_at: datetime | None
    updated_at: datetime | None
    faces: list[GroupFace]


class GroupDecisionOut(BaseModel):
    id: int
    action: str = Field(description="confirm | split | merge | identified")
    other_group_ids: list[int]
    face_ids: list[int]
    note: str
    username: str
    role: str
    at: datetime | None


class GroupDetail(GroupOut):
    decisions: list[GroupDecisionOut]


class SubjectAppearances(Spread):
    kind: str = "subject"
    id: int
    subject: int
    custody_reference: str
    appearances: list[Appearance]
    notice: str


class ProlificEntry(Spread):
    rank: int
    kind: str = Field(description="subject (confirmed matches) | group (unknown person)")
    id: int
    subject: int | None = None
    group: int | None = None
    custody_reference: str | None = None
    status: str | None = None
    size: int | None = None
    appearances: list[Appearance]


class ConfirmRequest(BaseModel):
    note: str = Field(default="", max_length=4000)
    expected_version: Version | None = None


class SplitRequest(BaseModel):
    face_ids: list[BodyId] = Field(min_length=1, description="the faces that leave for a new group of their own")
    note: str = Field(default="", max_length=4000)
    expected_version: Version | None = None


class MergeRequest(BaseModel):
    group_ids: list[BodyId] = Field(min_length=2, description="merged into the first one named")
    note: str = Field(default="", max_length=4000)


class GroupDecisionResult(BaseModel):
    group: int
    status: str | None = None
    new_group: int | None = None
    merged: list[int] | None = None
    face_ids: list[int]
    version: int


@router.get("/unknowns", response_model=list[GroupOut], tags=["prolific"])
def list_unknowns(
    rt: RuntimeDep,
    actor: ProlificReader,
    status: Annotated[str | None, Query(pattern="^(open|confirmed)$")] = None,
    min_faces: Annotated[int, Query(ge=1, description="1 includes singletons")] = 2,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> list[read.GroupEntry]:
    """Unknown repeat offenders: faces with no gallery match linked across submissions, largest first."""
    return rt.linking.list_groups(actor, status=status, min_faces=min_faces, limit=limit, offset=offset)


@router.get("/unknowns/{group_id}", response_model=GroupDetail, tags=["prolific"])
def get_unknown(rt: RuntimeDep, actor: ProlificReader, group_id: Id) -> read.GroupDetail:
    """One group: every appearance with retailer, store, incident, time and link score, and its decisions."""
    return rt.linking.group(actor, group_id)


@router.post("/unknowns/{group_id}/confirm", response_model=GroupDecisionResult, tags=["prolific"])
def confirm_unknown(rt: RuntimeDep, actor: GroupReviewer, group_id: Id, body: ConfirmRequest) -> read.GroupDecisionDone:
    """Confirm that a group's faces show one person (an investigative lead, not an identification)."""
    return rt.linking.confirm(actor, group_id, body.note, body.expected_version)


@router.post("/unknowns/{group_id}/split", response_model=GroupDecisionResult, tags=["prolific"])
def split_unknown(rt: RuntimeDep, actor: GroupReviewer, group_id: Id, body: SplitRequest) -> read.GroupDecisionDone:
    """Move the named faces into a new group; automatic linking never merges the two again."""
    return rt.linking.split(actor, group_id, body.face_ids, body.note, body.expected_version)


@router.post("/unknowns/merge", response_model=GroupDecisionResult, tags=["prolific"])
def merge_unknowns(rt: RuntimeDep, actor: GroupReviewer, body: MergeRequest) -> read.GroupDecisionDone:
    """Merge groups into the first one named (refused if two of them hold faces of one still)."""
    return rt.linking.merge(actor, body.group_ids, body.note)


@router.get("/subjects/{subject_id}/appearances", response_model=SubjectAppearances, tags=["prolific"])
def subject_appearances(rt: RuntimeDep, actor: ProlificReader, subject_id: Id) -> read.SubjectHistory:
    """A gallery subject's history: every confirmed match with retailer, store, incident and time."""
    return rt.linking.subject_appearances(actor, subject_id)


@router.get("/prolific", response_model=list[ProlificEntry], tags=["prolific"])
def prolific(
    rt: RuntimeDep,
    actor: ProlificReader,
    since: Annotated[datetime | None, Query(description="from this time (capture time, else submission time)")] = None,
    until: Annotated[datetime | None, Query(description="before this time")] = None,
    retailer: Annotated[list[str] | None, Query(description="only these retailers (repeatable)")] = None,
    store: Annotated[list[str] | None, Query(description="only these stores: the area (repeatable)")] = None,
    top: Annotated[int, Query(ge=1, le=1000)] = 10,
    kind: Annotated[str, Query(pattern="^(all|known|unknown)$")] = "all",
    min_incidents: Annotated[int, Query(ge=1)] = 1,
) -> list[read.ProlificEntry]:
    """Subjects and unknown groups ranked by distinct incidents, then retailers and stores, with appearances."""
    return rt.linking.prolific(
        actor,
        since=since,
        until=until,
        retailers=retailer or [],
        stores=store or [],
        top=top,
        kind=kind,
        min_incidents=min_incidents,
    )
