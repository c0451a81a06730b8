"""Persons within an incident (service.domain.persons): grouped, searched with a fused score, stored.

A clip's tracks are persons too, stored by the worker with the shots' faces (``store_tracks``).

When the last still of an incident of a submission is processed, the worker asks for its persons:
the incident's faces are grouped (two faces of one still are never one person), each person with
a searched face is searched as one unit — every member scored exactly against every subject any
member brought up, the scores fused, poor faces counting with a low weight — and the persons and
their ranked candidates are stored. A face of a still without an incident reference is a person
of one, whose candidates are the face's own, stored by the worker with the face itself.

A person a reviewer has decided on keeps its faces; when more stills of its incident arrive
later, only the undecided persons are regrouped with the new faces.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy import Select, delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.engine import read_session
from service.db.models import Candidate, PersonCandidate, ProbeFace, ProbeImage, ProbePerson, Submission
from service.db.vectors import embedding_from_bytes
from service.domain.clips import STILL
from service.domain.persons import Fusion, MemberFace, evidence_weight, fuse, group_faces
from service.domain.roles import Principal, Role
from service.domain.search import FaceOutcome
from service.services import audit
from service.services.search import GallerySearcher

log = logging.getLogger(__name__)

UNFINISHED = ("queued", "processing")


class _FaceCandidate(Protocol):
    """A face's own candidate: a stored ``Candidate`` or a fresh ``CandidateHit``."""

    @property
    def rank(self) -> int: ...
    @property
    def subject_id(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def above_threshold(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class PersonHit:
    rank: int
    subject_id: int
    score: float
    above_threshold: bool
    best_face_id: int
    best_face_score: float

    @classmethod
    def of_face(cls, hit: _FaceCandidate, face_id: int) -> PersonHit:
        """A person of one's candidate: its face's own, at the face's threshold."""
        return cls(hit.rank, hit.subject_id, hit.score, hit.above_threshold, face_id, hit.score)

    def row(self, person_id: int) -> dict[str, object]:
        return {
            "person_id": person_id,
            "rank": self.rank,
            "score": self.score,
            "above_threshold": self.above_threshold,
            "subject_id": self.subject_id,
            "best_face_id": self.best_face_id,
            "best_face_score": self.best_face_score,
        }


@dataclass(frozen=True, slots=True)
class StoredTrack:
    """A clip's track as the worker stores it: its shots' stored face ids, in time order, and its
    candidates (``best_face_id`` a stored face id), or None if no shot was searched."""

    clip_image_id: int
    start_s: float
    end_s: float
    face_ids: list[int]
    hits: list[PersonHit] | None


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What a build read: the faces to group, and the undecided persons it will replace."""

    faces: list[MemberFace]
    searched: set[int]
    replaced: set[int]


class PersonBuilder:
    def __init__(
        self,
        factory: sessionmaker[Session],
        searcher: GallerySearcher,
        fusion: Fusion,
        threshold: float,
        group_threshold: float,
        top_k: int,
    ) -> None:
        self.factory = factory
        self.searcher = searcher
        self.fusion = fusion
        self.threshold = threshold
        self.group_threshold = group_threshold
        self.top_k = top_k

    # -- which incidents are ready ---------------------------------------------------------------
    def build_for_images(self, image_ids: list[int]) -> int:
        """Build the persons of every incident these processed images complete; returns persons stored."""
        if not image_ids:
            return 0
        with read_session(self.factory) as session:
            rows = session.execute(
                select(ProbeImage.id, ProbeImage.submission_id, ProbeImage.incident_reference).where(
                    ProbeImage.id.in_(image_ids)
                )
            ).all()
        units = sorted({(int(sid), ref) for _, sid, ref in rows if ref})
        alone = sorted({(int(sid), int(i)) for i, sid, ref in rows if not ref})
        built = 0
        for submission_id, reference in units:
            built += self._build(submission_id, reference, None)
        for submission_id, image_id in alone:
            built += self._build(submission_id, "", image_id)
        return built

    def store_alone(self, session: Session, faces: list[tuple[int, int, FaceOutcome]]) -> None:
        """Persons of one for faces of stills without an incident reference, in the caller's transaction
        (the worker's, which stores the faces): each with its face's own candidates."""
        if not faces:
            return
        returning = insert(ProbePerson).returning(ProbePerson.id, sort_by_parameter_order=True)
        rows = [
            {
                "submission_id": submission_id,
                "incident_reference": "",
                "searched": outcome.searched,
                "fusion": self.fusion.value,
                "threshold": self.searcher.threshold,
            }
            for submission_id, _, outcome in faces
        ]
        person_ids = [int(i) for i in session.scalars(returning, rows).all()]
        session.execute(
            update(ProbeFace),
            [{"id": face_id, "person_id": pid} for (_, face_id, _), pid in zip(faces, person_ids, strict=True)],
        )
        candidates = [
            PersonHit.of_face(hit, face_id).row(pid)
            for (_, face_id, outcome), pid in zip(faces, person_ids, strict=True)
            for hit in outcome.candidates
        ]
        if candidates:
            session.execute(insert(PersonCandidate), candidates)

    def build_missing(self) -> int:
        """Build the persons a crash left unbuilt: processed faces that belong to no person."""
        with read_session(self.factory) as session:
            image_ids = [
                int(i)
                for i in session.scalars(
                    select(ProbeFace.probe_image_id)
                    .where(ProbeFace.person_id.is_(None), ProbeFace.embedding.is_not(None))
                    .distinct()
                )
            ]
        return self.build_for_images(image_ids)

    @staticmethod
    def _faces_query(submission_id: int, reference: str, image_id: int | None) -> Select[ProbeFace]:
        """The faces with an embedding of one incident's stills in a submission, or of one still (a
        clip's faces are its tracks' shots: each track is a person already)."""
        query = (
            select(ProbeFace)
            .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
            .where(
                ProbeImage.submission_id == submission_id,
                ProbeImage.media == STILL,
                ProbeFace.embedding.is_not(None),
            )
            .order_by(ProbeFace.id)
        )
        if image_id is not None:
            return query.where(ProbeImage.id == image_id)
        return query.where(ProbeImage.incident_reference == reference)

    def _load(self, session: Session, submission_id: int, reference: str, image_id: int | None) -> _Loaded | None:
        """The faces still to group, or None while a still of the incident is unprocessed."""
        if image_id is None:
            pending = session.scalar(
                select(ProbeImage.id).where(
                    ProbeImage.submission_id == submission_id,
                    ProbeImage.incident_reference == reference,
                    ProbeImage.media == STILL,
                    ProbeImage.status.in_(UNFINISHED),
                )
            )
            if pending is not None:
                return None
        decided = set(
            session.scalars(
                select(ProbePerson.id).where(
                    ProbePerson.submission_id == submission_id,
                    ProbePerson.incident_reference == reference,
                    ProbePerson.review_state != "unreviewed",
                )
            )
        )
        faces: list[MemberFace] = []
        searched: set[int] = set()
        replaced: set[int] = set()
        for face in session.scalars(self._faces_query(submission_id, reference, image_id)):
            if face.person_id is not None and face.person_id in decided:
                continue
            if face.person_id is not None:
                replaced.add(int(face.person_id))
            assert face.embedding is not None
            faces.append(
                MemberFace(
                    face_id=int(face.id),
                    image_id=int(face.probe_image_id),
                    embedding=embedding_from_bytes(face.embedding),
                    quality_score=float(face.quality_score),
                    usable=bool(face.usable),
                )
            )
            if face.searched:
                searched.add(int(face.id))
        return _Loaded(faces, searched, replaced)

    # -- building ------------------------------------------------------------------------------
    def _build(self, submission_id: int, reference: str, image_id: int | None) -> int:
        """Group, search and store one incident's (or one still's) persons; a concurrent change retries."""
        for _ in range(3):
            with read_session(self.factory) as session:
                loaded = self._load(session, submission_id, reference, image_id)
            if loaded is None or not loaded.faces:
                return 0
            persons = (
                group_faces(loaded.faces, self.group_threshold) if image_id is None else [[f] for f in loaded.faces]
            )
            hits = [self._search(person, loaded.searched) for person in persons]
            stored = self._store(submission_id, reference, image_id, loaded, persons, hits)
            if stored is not None:
                return stored
        log.warning("persons of submission %s incident %r changed three times while built", submission_id, reference)
        return 0

    def _search(self, person: list[MemberFace], searched: set[int]) -> list[PersonHit] | None:
        """The person's fused candidates, or None if none of its faces was searched (gate, no override)."""
        if not any(f.face_id in searched for f in person):
            return None
        if len(person) == 1:
            return []  # a person of one: its candidates are its face's own (copied when stored)
        return self.search_members(person)

    def search_members(self, person: list[MemberFace]) -> list[PersonHit]:
        """The fused candidates of a person of several faces (an incident's, or a track's shots): every
        member scored exactly against every subject any member brought up, the scores fused."""
        queries = np.stack([f.embedding for f in person])
        found = self.searcher.search(queries, self.searcher.holder.pack_id, k=self.top_k)
        subjects = sorted({hit.subject_id for hits in found for hit in hits})
        if not subjects:
            return []
        scores = self.searcher.subject_scores(queries, subjects)
        weights = np.array([evidence_weight(f.quality_score, f.usable) for f in person])
        fused = fuse(scores, weights, self.fusion, np.array([f.usable for f in person]))
        order = np.argsort(-fused, kind="stable")[: self.top_k]
        return [
            PersonHit(
                rank=rank,
                subject_id=subjects[c],
                score=float(fused[c]),
                above_threshold=bool(fused[c] >= self.threshold),
                best_face_id=person[int(np.argmax(scores[:, c]))].face_id,
                best_face_score=float(scores[:, c].max()),
            )
            for rank, c in enumerate(order, start=1)
        ]

    def _store(
        self,
        submission_id: int,
        reference: str,
        image_id: int | None,
        loaded: _Loaded,
        persons: list[list[MemberFace]],
        hits: list[list[PersonHit] | None],
    ) -> int | None:
        """Replace the undecided persons with the new ones, if nothing changed since they were read."""
        with self.factory() as session, session.begin():
            submission = session.get(Submission, submission_id, with_for_update=True)  # one builder at a time
            if submission is None:
                return 0
            again = self._load(session, submission_id, reference, image_id)
            if again is None or {f.face_id for f in again.faces} != {f.face_id for f in loaded.faces}:
                return None
            if again.replaced != loaded.replaced:
                return None
            if loaded.replaced:
                session.execute(
                    update(ProbeFace).where(ProbeFace.person_id.in_(loaded.replaced)).values(person_id=None)
                )
                session.execute(delete(PersonCandidate).where(PersonCandidate.person_id.in_(loaded.replaced)))
                session.execute(delete(ProbePerson).where(ProbePerson.id.in_(loaded.replaced)))
            for person, person_hits in zip(persons, hits, strict=True):
                face_ids = [f.face_id for f in person]
                if person_hits is not None and len(person) == 1:
                    person_hits = self._own_candidates(session, person[0].face_id)
                self._add_person(session, submission, reference, face_ids, person_hits)
            return len(persons)

    def store_tracks(
        self, session: Session, submission_id: int, reference: str, clip_image_id: int, tracks: list[StoredTrack]
    ) -> None:
        """A clip's tracks as persons, in the caller's transaction (the worker's, which stores the shots'
        faces): each with its fused candidates, or its one shot's own."""
        submission = session.get(Submission, submission_id)
        assert submission is not None
        for track in tracks:
            self._add_person(session, submission, reference, track.face_ids, track.hits, track)

    def _add_person(
        self,
        session: Session,
        submission: Submission,
        reference: str,
        face_ids: list[int],
        hits: list[PersonHit] | None,
        track: StoredTrack | None = None,
    ) -> int:
        """One person, its faces and its candidates (None: not searched); a fused search is audited."""
        row = ProbePerson(
            submission_id=submission.id,
            incident_reference=reference,
            searched=hits is not None,
            fusion=self.fusion.value,
            threshold=self.threshold if len(face_ids) > 1 else self.searcher.threshold,
            clip_image_id=track.clip_image_id if track is not None else None,
            start_s=track.start_s if track is not None else None,
            end_s=track.end_s if track is not None else None,
        )
        session.add(row)
        session.flush()
        session.execute(update(ProbeFace).where(ProbeFace.id.in_(face_ids)).values(person_id=row.id))
        if hits:
            session.execute(insert(PersonCandidate), [h.row(row.id) for h in hits])
        if hits is not None and len(face_ids) > 1:
            submitter = Principal(username=submission.submitted_by, role=Role(submission.submitted_role), via="worker")
            audit.append(
                session,
                submitter,
                "person_search",
                "probe_person",
                row.id,
                submission_id=submission.id,
                case_reference=submission.case_reference,
                purpose=submission.purpose,
                incident_reference=reference,
                face_ids=face_ids,
                fusion=self.fusion.value,
                pack=submission.pack_id,
                threshold=self.threshold,
                candidates_returned=len(hits),
                candidate_subject_ids=sorted({h.subject_id for h in hits}),
                **({"track": {"clip_image_id": track.clip_image_id, "start_s": track.start_s}} if track else {}),
            )
        return int(row.id)

    def _own_candidates(self, session: Session, face_id: int) -> list[PersonHit]:
        """A person of one: its face's stored candidates, at the face's threshold."""
        query = select(Candidate).where(Candidate.probe_face_id == face_id).order_by(Candidate.rank)
        return [PersonHit.of_face(c, face_id) for c in session.scalars(query)]
