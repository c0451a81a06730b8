"""Request and response schemas (they make the OpenAPI document complete)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. image_unreadable, not_found")
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class SubmissionCreate(BaseModel):
    case_reference: str = Field(min_length=1, max_length=128, description="case or crime reference")
    purpose: str = Field(min_length=1, max_length=2000, description="why this search is necessary")
    search_poor_faces: bool = Field(
        default=False, description="also search faces the quality gate marked poor (recorded per face)"
    )


class Progress(BaseModel):
    total: int
    queued: int
    processing: int
    done: int
    failed: int


class SubmissionSummary(BaseModel):
    id: int
    case_reference: str
    purpose: str
    submitted_by: str
    search_poor_faces: bool
    pack_id: str
    created_at: datetime
    status: str = Field(description="open | queued | processing | complete")
    progress: Progress


class ImageError(BaseModel):
    code: str | None
    message: str | None


class ProbeImageStatus(BaseModel):
    id: int
    file: str
    status: str = Field(description="queued | processing | done | failed")
    error: ImageError | None
    retailer: str
    store: str
    incident_reference: str
    captured_at: datetime | None
    supplied_by: str
    witness_statement: bool


class SubmissionDetail(SubmissionSummary):
    images: list[ProbeImageStatus]


class CandidateOut(BaseModel):
    id: int | None = Field(default=None, description="stored candidate id (submissions only)")
    rank: int
    custody_reference: str
    subject_id: int
    template_id: int | None
    score: float = Field(description="cosine similarity")
    above_threshold: bool = Field(description="score >= the pack's operating threshold")


class Quality(BaseModel):
    score: float
    usable: bool
    reasons: list[str]


class FaceOut(BaseModel):
    face_index: int
    box: list[float] = Field(description="x, y, width, height in image pixels")
    landmarks: list[list[float]]
    det_score: float
    quality: Quality
    searched: bool
    poor_face_override: bool
    candidates: list[CandidateOut]


class ReviewInfo(BaseModel):
    state: str = Field(description="unreviewed | awaiting_confirmation | confirmed")
    version: int = Field(description="send back as expected_version to detect concurrent decisions")
    outcome: str | None
    candidate_id: int | None
    first_reviewer: str | None


class StoredFaceOut(FaceOut):
    id: int
    threshold: float
    review: ReviewInfo


class ProbeImageResult(ProbeImageStatus):
    faces: list[StoredFaceOut]


class SubmissionResults(SubmissionSummary):
    images: list[ProbeImageResult]


class UploadAccepted(BaseModel):
    submission_id: int
    image_ids: list[int]


class SearchResult(BaseModel):
    pack_id: str
    threshold: float
    width: int
    height: int
    faces: list[FaceOut]
    notice: str = "Candidates are investigative leads for a trained reviewer, never identifications."


class EnrolResult(BaseModel):
    status: str = Field(description="enrolled | already_enrolled | rejected")
    custody_reference: str
    file_name: str
    subject_id: int | None
    template_id: int | None
    reason_code: str | None = None
    reason: str | None = None
    quality_reasons: list[str] = []


class SubjectOut(BaseModel):
    id: int
    custody_reference: str
    source: str
    lawful_basis: str
    conviction_status: str
    under_18: bool
    enrolled_at: datetime
    images: int
    templates: int


class DeletedSubject(BaseModel):
    subject_id: int
    templates: int
    images: int
    files: int


class Health(BaseModel):
    status: str
    pack_id: str
    gallery_templates: int
    index: str


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class LoginResponse(BaseModel):
    token: str
    token_type: str = "bearer"
    expires_at: datetime
    username: str
    role: str


class Me(BaseModel):
    username: str
    role: str
    permissions: list[str]


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    role: str = Field(description="analyst | reviewer | confirmer | auditor | admin")
    password: str = Field(min_length=1, max_length=1024)


class PasswordReset(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    disabled: bool
    created_at: datetime


class TokenOut(BaseModel):
    username: str
    token: str = Field(description="shown once; only its hash is stored")


class DecisionRequest(BaseModel):
    action: str = Field(description="review | confirm | overturn | reopen")
    outcome: str | None = Field(default=None, description="for review: possible_match | no_match | inconclusive")
    candidate_id: int | None = Field(default=None, description="for possible_match: the candidate's id")
    note: str = Field(default="", max_length=4000)
    expected_version: int | None = Field(default=None, description="the face's review version you decided on")


class DecisionOut(BaseModel):
    face_id: int
    decision_id: int
    state: str
    version: int
    outcome: str | None
    candidate_id: int | None


class DecisionHistoryItem(BaseModel):
    id: int
    action: str
    outcome: str | None
    candidate_id: int | None
    subject_id: int | None
    note: str
    username: str
    role: str
    from_state: str
    to_state: str
    at: datetime


class QueueItem(BaseModel):
    face_id: int
    submission_id: int
    file: str
    face_index: int
    state: str
    first_reviewer: str | None
    outcome: str | None


class SprintReport(BaseModel):
    submission_id: int
    case_reference: str
    images_supplied: int
    images_failed: int
    images_with_face: int
    faces: int
    usable_faces: int
    faces_searched: int
    faces_with_candidate_above_threshold: int
    possible_matches: int
    confirmed_matches: int
    distinct_subjects_confirmed: int
    faces_awaiting_review: int
    faces_awaiting_confirmation: int


class DisclosureRequest(BaseModel):
    recipient: str = Field(min_length=1, max_length=500, description="who receives the disclosed leads")
    reason: str = Field(min_length=1, max_length=2000)


class AuditEventOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, object]
    prev_hash: str
    hash: str


class AuditVerification(BaseModel):
    ok: bool
    events: int
    first_bad_seq: int | None
    problem: str | None


class PurgeResult(BaseModel):
    submissions: int
    images_deleted: int
    faces_deleted: int
    images_kept: int
    files_deleted: int
