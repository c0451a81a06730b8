"""Request bodies and the API's own responses (the services' read models are in ``service.services.views``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel, Field

# Anything larger than the database holds is refused (422) before it reaches it: ids are INTEGER
# columns (32-bit on PostgreSQL), versions, sequence numbers and offsets 64-bit.
MAX_ID = 2**31 - 1
MAX_BIG = 2**63 - 1
Id = Annotated[int, Path(ge=0, le=MAX_ID, description="an id")]
Offset = Annotated[int, Query(ge=0, le=MAX_BIG)]
BodyId = Annotated[int, Field(ge=0, le=MAX_ID)]
Version = Annotated[int, Field(ge=0, le=MAX_BIG)]


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


class UploadAccepted(BaseModel):
    submission_id: int
    image_ids: list[int]


class EnrolResult(BaseModel):
    status: str = Field(description="enrolled | already_enrolled | rejected")
    custody_reference: str
    file_name: str
    subject_id: int | None
    template_id: int | None
    reason_code: str | None = None
    reason: str | None = None
    quality_reasons: list[str] = []
    view: str | None = Field(default=None, description="the view it was enrolled as (front, left, ...)")


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


class TokenOut(BaseModel):
    username: str
    token: str = Field(description="shown once; only its hash is stored")


class DecisionRequest(BaseModel):
    action: str = Field(description="review | confirm | overturn | reopen")
    outcome: str | None = Field(default=None, description="for review: possible_match | no_match | inconclusive")
    candidate_id: BodyId | None = Field(default=None, description="for possible_match: the candidate's id")
    note: str = Field(default="", max_length=4000)
    expected_version: Version | None = Field(default=None, description="the face's review version you decided on")


class SearchAnywayRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="why the face is searched despite its quality")


class DisclosureRequest(BaseModel):
    recipient: str = Field(min_length=1, max_length=500, description="who receives the disclosed leads")
    reason: str = Field(min_length=1, max_length=2000)
