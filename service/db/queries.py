"""Queries more than one service asks: written once here."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.orm import Session

from service.db.models import Candidate, CustodyImage, FaceTemplate, ProbeFace, ProbeImage, Subject, Submission
from service.db.vectors import embedding_from_bytes


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


def digests_in_use(session: Session, digests: Iterable[str]) -> set[str]:
    """Which of ``digests`` a row still names: a probe image, a clip's shot or a custody image."""
    wanted = sorted(set(digests))
    used: set[str] = set()
    for start in range(0, len(wanted), 500):  # well under any database's bound-parameter limit
        chunk = wanted[start : start + 500]
        for column in (ProbeImage.sha256, ProbeFace.frame_sha256, CustodyImage.sha256):
            used.update(str(d) for d in session.scalars(select(column).where(column.in_(chunk)).distinct()))
    return used


def names_stored_files(session: Session) -> bool:
    """Whether any row names a stored file (a probe image or a custody image)."""
    return any(session.scalar(select(column).limit(1)) is not None for column in (ProbeImage.id, CustodyImage.id))


def newest_stored_digests(session: Session) -> list[str]:
    """The sha256 of the newest probe image that has a stored file (not one refused at upload) and of
    the newest custody image: files every host's store must hold."""
    probe = select(ProbeImage.sha256).where(ProbeImage.status != "failed").order_by(ProbeImage.id.desc()).limit(1)
    custody = select(CustodyImage.sha256).order_by(CustodyImage.id.desc()).limit(1)
    return [str(d) for d in (session.scalar(probe), session.scalar(custody)) if d]


def deleted_subjects(session: Session, named: Iterable[int]) -> set[int]:
    """Which of the ``named`` subjects no longer exist (deleted since a search named them); those still
    present are locked FOR SHARE, so a deletion now waits for the caller's commit."""
    wanted = set(named)
    if not wanted:
        return set()
    present = select(Subject.id).where(Subject.id.in_(wanted)).with_for_update(read=True)
    return wanted - set(session.scalars(present))


def rank_for_new_candidate(session: Session, face_id: int, score: float) -> tuple[int, list[int]]:
    """Make room for a candidate found after a probe face's list was made (a cold-case re-search, a
    group decision): its rank by score (after those scoring as much or more), the candidates below it
    moved down one. Returns the rank and the list's candidate ids in their previous order, for the trail."""
    previous = list(
        session.scalars(select(Candidate.id).where(Candidate.probe_face_id == face_id).order_by(Candidate.rank))
    )
    rank = 1 + int(
        session.scalar(select(func.count()).where(Candidate.probe_face_id == face_id, Candidate.score >= score)) or 0
    )
    below = (Candidate.probe_face_id == face_id) & (Candidate.rank >= rank)
    # Two steps, so that (face, rank) stays unique after each row (no database defers the check).
    session.execute(update(Candidate).where(below).values(rank=-(Candidate.rank + 1)))
    session.execute(
        update(Candidate).where(Candidate.probe_face_id == face_id, Candidate.rank < 0).values(rank=-Candidate.rank)
    )
    return rank, previous


def subject_scores(
    session: Session, queries: NDArray[np.float32], subject_ids: list[int], pack_id: str
) -> NDArray[np.float64]:
    """Exact scores (queries x subjects) of each query against each subject at its best template of
    ``pack_id`` (-inf for a subject with none), read from the database rather than an index."""
    scores = np.full((len(queries), len(subject_ids)), -np.inf)
    if not subject_ids or not len(queries):
        return scores
    column = {subject: i for i, subject in enumerate(subject_ids)}
    rows = session.execute(
        select(FaceTemplate.subject_id, FaceTemplate.embedding).where(
            FaceTemplate.subject_id.in_(subject_ids), FaceTemplate.pack_id == pack_id
        )
    ).all()
    if rows:
        templates = np.stack([embedding_from_bytes(blob) for _, blob in rows]).astype(np.float64)
        sims = np.asarray(queries, dtype=np.float64) @ templates.T
        for j, (subject_id, _) in enumerate(rows):
            c = column[int(subject_id)]
            scores[:, c] = np.maximum(scores[:, c], sims[:, j])
    return scores
