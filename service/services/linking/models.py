"""The read side's typed rows: plain dicts (``TypedDict``), so the API's response models and the
CLI's ``--json`` get exactly the keys, order and ISO 8601 strings they always had."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class Still(TypedDict):
    """Where and when a face was seen: its still's provenance."""

    submission: int
    case_reference: str
    image_id: int
    file: str
    retailer: str
    store: str
    incident_reference: str
    captured_at: str | None
    seen_at: str  # capture time, else the submission's time
    incident: list[str]  # the key that makes appearances one incident (``incident_key``)


class KnownAppearance(Still):
    """A subject's confirmed match: the face, its candidate and the candidate's cosine."""

    face_id: int
    candidate_id: int
    score: float


class Sighting(Still):
    """A face of an unknown group, where and when it was seen."""

    face_id: int


class GroupAppearance(Sighting):
    score: float | None  # the face's mean cosine to the group's other faces


class GroupFace(Still):
    """A member of an unknown group, with how it joined and its current link score."""

    face_id: int
    quality: float
    linked_score: float | None
    nearest_face_id: int | None
    nearest_score: float | None
    linked_by: str
    reason: str
    linked_at: str | None
    score: float  # mean cosine to the group's other faces


class Spread(TypedDict):
    incidents: int
    retailers: int
    stores: int
    first_seen: str | None
    last_seen: str | None


class GroupEntry(Spread):
    group: int
    kind: str
    id: int
    status: str
    size: int
    version: int
    representative_face_id: int | None
    confirmed_by: str | None
    created_at: str | None
    updated_at: str | None
    faces: list[GroupFace]


class GroupDecisionEntry(TypedDict):
    id: int
    action: str
    other_group_ids: list[Any]
    face_ids: list[Any]
    note: str
    username: str
    role: str
    at: str | None


class GroupDetail(GroupEntry):
    decisions: list[GroupDecisionEntry]


class SubjectHistory(Spread):
    kind: str
    id: int
    subject: int
    custody_reference: str
    appearances: list[KnownAppearance]
    notice: str


class RankedSubject(Spread):
    kind: Literal["subject"]
    id: int
    subject: int
    custody_reference: str
    appearances: list[KnownAppearance]
    rank: int


class RankedGroup(Spread):
    kind: Literal["group"]
    id: int
    group: int
    appearances: list[GroupAppearance]
    status: str | None
    size: int
    rank: int


ProlificEntry = RankedSubject | RankedGroup


class GroupDecisionDone(TypedDict):
    """What a reviewer's confirm, split or merge did: the group, its faces and its new version."""

    group: int
    status: NotRequired[str]  # confirm
    new_group: NotRequired[int]  # split: the group the faces moved to
    merged: NotRequired[list[int]]  # merge: the groups folded into ``group``
    face_ids: list[int]
    version: int


class ColdCaseHit(TypedDict):
    """An unknown face the new template matched: its new candidate, and the state it was reopened from."""

    face_id: int
    candidate_id: int
    group_id: int
    score: float
    reopened_from: str | None
