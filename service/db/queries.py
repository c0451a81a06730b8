"""Queries more than one service asks: written once here."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, select

from service.db.models import Candidate, ProbeFace, ProbeImage, Subject, Submission


def is_confirmed_match() -> ColumnElement[bool]:
    """A probe face whose ``possible_match`` a second person has confirmed (R3)."""
    return (ProbeFace.review_state == "confirmed") & (ProbeFace.review_outcome == "possible_match")


def confirmed_matches(
    *, submission_id: int | None = None, subject_id: int | None = None
) -> Select[ProbeFace, Candidate, Subject, ProbeImage, Submission]:
    """Every confirmed match with its chosen candidate, the candidate's subject and the probe's still,
    oldest face first; optionally of one submission or one subject."""
    query = (
        select(ProbeFace, Candidate, Subject, ProbeImage, Submission)
        .join(Candidate, Candidate.id == ProbeFace.review_candidate_id)
        .join(Subject, Subject.id == Candidate.subject_id)
        .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
        .join(Submission, Submission.id == ProbeImage.submission_id)
        .where(is_confirmed_match())
        .order_by(ProbeFace.id)
    )
    if submission_id is not None:
        query = query.where(ProbeImage.submission_id == submission_id)
    if subject_id is not None:
        query = query.where(Candidate.subject_id == subject_id)
    return query
