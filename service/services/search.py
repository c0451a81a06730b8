"""1:N search of probe faces against the gallery: ranked candidates, one per subject; the one-off search."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.engine import read_session
from service.db.image_store import sha256_bytes
from service.db.models import Candidate, FaceTemplate, ProbeFace, ProbeImage, Subject
from service.db.queries import deleted_subjects, subject_scores
from service.db.vectors import embedding_from_bytes
from service.domain.faces import FaceRecord
from service.domain.roles import Permission, Principal
from service.domain.search import CandidateHit, FaceOutcome, require_case_and_purpose, without_subjects
from service.embeddings.decode import DecodedStill
from service.embeddings.pipeline import FacePipeline
from service.errors import Conflict, Forbidden, InvalidRequest, NotFound, PackMismatch
from service.services import audit
from service.services.gallery import GalleryIndexHolder
from service.services.submissions import visible_submission
from service.services.views import FaceOut, SearchResult, StoredSearch


class GallerySearcher:
    def __init__(
        self,
        holder: GalleryIndexHolder,
        factory: sessionmaker[Session],
        threshold: float,
        top_k: int,
        oversample: int,
    ) -> None:
        self.holder = holder
        self.factory = factory
        self.threshold = threshold
        self.top_k = top_k
        self.oversample = oversample

    def search(
        self,
        queries: NDArray[np.float32],
        pack_id: str,
        k: int | None = None,
        threshold: float | None = None,
    ) -> list[list[CandidateHit]]:
        """Top-k distinct subjects per query, each at its best template's score (R11: same pack only)."""
        if pack_id != self.holder.pack_id:
            raise PackMismatch(
                f"probe embeddings come from pack {pack_id!r} but the gallery holds {self.holder.pack_id!r}"
            )
        k = k or self.top_k
        threshold = self.threshold if threshold is None else threshold
        if len(queries) == 0:
            return []
        scores, ids = self.holder.search(np.ascontiguousarray(queries, dtype=np.float32), k * self.oversample)
        wanted = {int(i) for i in ids.ravel() if i >= 0}
        owners: dict[int, tuple[int, str]] = {}
        if wanted:
            # A short session of its own, opened after the index search: the index may reconcile
            # with the database first, and no caller's transaction is held across either.
            with read_session(self.factory) as session:
                rows = session.execute(
                    select(FaceTemplate.id, Subject.id, Subject.custody_reference)
                    .join(Subject, Subject.id == FaceTemplate.subject_id)
                    .where(FaceTemplate.id.in_(wanted))
                ).all()
            owners = {int(t): (int(s), str(ref)) for t, s, ref in rows}
        results: list[list[CandidateHit]] = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            seen: set[int] = set()
            hits: list[CandidateHit] = []
            for score, template_id in zip(row_scores, row_ids, strict=True):
                owner = owners.get(int(template_id))
                if template_id < 0 or owner is None or owner[0] in seen:
                    continue  # padding, a template deleted since the search, or a subject already listed
                seen.add(owner[0])
                hits.append(
                    CandidateHit(
                        rank=len(hits) + 1,
                        subject_id=owner[0],
                        custody_reference=owner[1],
                        template_id=int(template_id),
                        score=float(score),
                        above_threshold=bool(score >= threshold),
                    )
                )
                if len(hits) == k:
                    break
            results.append(hits)
        return results

    def subject_scores(self, queries: NDArray[np.float32], subject_ids: list[int]) -> NDArray[np.float64]:
        """Exact scores (queries x subjects) at each subject's best template: a person's members are
        scored against every subject any one of them brought up, beyond another member's top k."""
        with read_session(self.factory) as session:
            return subject_scores(session, queries, subject_ids, self.holder.pack_id)


def analyse_and_search(
    pipeline: FacePipeline,
    searcher: GallerySearcher,
    still: DecodedStill,
    search_poor_faces: bool,
    threshold: float | None = None,
) -> list[FaceOutcome]:
    """Every face of one decoded still (in its own pixels) with its quality verdict; usable faces
    (or all, on override) searched.

    Inference runs outside any database transaction; only the candidate look-up uses one.
    """
    faces = pipeline.analyse_still(still).faces
    return search_faces(searcher, pipeline.pack_id, faces, search_poor_faces, threshold)


def search_faces(
    searcher: GallerySearcher,
    pack_id: str,
    faces: list[FaceRecord],
    search_poor_faces: bool,
    threshold: float | None = None,
) -> list[FaceOutcome]:
    """Analysed faces (a still's, or a clip's best shots) searched: usable ones, or all on override."""
    to_search = [i for i, f in enumerate(faces) if f.quality.usable or search_poor_faces]
    hits: dict[int, list[CandidateHit]] = {}
    if to_search:
        queries = np.stack([faces[i].embedding for i in to_search])
        found_all = searcher.search(queries, pack_id, threshold=threshold)
        for i, found in zip(to_search, found_all, strict=True):
            hits[i] = found
    return [
        FaceOutcome(
            record=face,
            searched=i in hits,
            override=i in hits and not face.quality.usable,
            candidates=hits.get(i, []),
        )
        for i, face in enumerate(faces)
    ]


def audit_search(
    session: Session,
    actor: Principal,
    object_id: object,
    outcomes: list[FaceOutcome],
    *,
    case_reference: str,
    purpose: str,
    probe_sha256: str,
    pack: str,
    threshold: float,
    **extra: Any,
) -> None:
    """Record a search as R1 asks: who, role, purpose, case, probe hash, pack, threshold, candidates."""
    searched = [o for o in outcomes if o.searched]
    audit.append(
        session,
        actor,
        "search",
        "probe_image",
        object_id,
        **extra,
        case_reference=case_reference,
        purpose=purpose,
        probe_sha256=probe_sha256,
        pack=pack,
        threshold=threshold,
        faces_searched=len(searched),
        poor_face_override=any(o.override for o in searched),
        candidates_returned=sum(len(o.candidates) for o in searched),
        candidate_subject_ids=sorted({c.subject_id for o in searched for c in o.candidates}),
    )


class SearchService:
    """The one-off synchronous search of one still (API ``POST /search`` and ``rfr search``)."""

    def __init__(
        self,
        pipeline: FacePipeline,
        searcher: GallerySearcher,
        factory: sessionmaker[Session],
        decode_slots: threading.Semaphore | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.searcher = searcher
        self.factory = factory
        # Held from decoding to the end of the analysis: while the still's pixels are in memory.
        self.decode_slots = decode_slots or threading.Semaphore(1)

    def search_still(
        self,
        actor: Principal,
        data: bytes,
        case_reference: str,
        purpose: str,
        search_poor_faces: bool = False,
        threshold: float | None = None,
        override_reason: str = "",
    ) -> SearchResult:
        """Every face of the still and its candidates, audited; a threshold below the pack's needs a
        confirmer and a reason (R4), recorded."""
        require_case_and_purpose(case_reference, purpose)
        pack_threshold = self.searcher.threshold
        used = pack_threshold if threshold is None else threshold
        if used < pack_threshold:
            if not actor.can(Permission.OVERRIDE_THRESHOLD):
                raise Forbidden(f"a threshold below the pack's {pack_threshold} needs the confirmer role")
            if not override_reason.strip():
                raise InvalidRequest("a threshold override needs a reason")
        with self.decode_slots:
            still = self.pipeline.decode_still(data)
            outcomes = analyse_and_search(self.pipeline, self.searcher, still, search_poor_faces, used)
        pack = self.pipeline.pack_id
        with self.factory() as session, session.begin():
            digest = sha256_bytes(data)
            if used != pack_threshold:
                audit.append(
                    session,
                    actor,
                    "threshold_override",
                    "search",
                    digest,
                    pack=pack,
                    pack_threshold=pack_threshold,
                    threshold=used,
                    reason=override_reason.strip(),
                )
            audit_search(
                session,
                actor,
                digest,
                outcomes,
                case_reference=case_reference,
                purpose=purpose,
                probe_sha256=digest,
                pack=pack,
                threshold=used,
            )
        return SearchResult(
            pack_id=pack,
            threshold=used,
            width=still.width,
            height=still.height,
            faces=[FaceOut.model_validate(o.to_dict(i)) for i, o in enumerate(outcomes)],
        )

    def search_held_back_face(self, actor: Principal, face_id: int, reason: str) -> StoredSearch:
        """ "Search anyway": a stored face the quality gate held back, searched on a confirmer's override
        with the reason recorded; its candidates are stored as the worker stores a searched face's.
        (The person of an incident it belongs to keeps its fused candidates.)"""
        if not actor.can(Permission.OVERRIDE_THRESHOLD):
            raise Forbidden("searching a face the quality gate held back needs the confirmer role")
        if not reason.strip():
            raise InvalidRequest("say why this face is searched despite its quality: the override is recorded")
        with read_session(self.factory) as session:
            face = session.get(ProbeFace, face_id)
            image = session.get(ProbeImage, face.probe_image_id) if face is not None else None
            if face is None or image is None:
                raise NotFound(f"probe face {face_id} not found")
            visible_submission(session, actor, image.submission_id)
            if face.searched:
                raise Conflict(f"face {face_id} has been searched already")
            if face.embedding is None:
                raise InvalidRequest(f"face {face_id} has no embedding to search with")
            query, pack = embedding_from_bytes(face.embedding)[None, :], face.pack_id
        [hits] = self.searcher.search(query, pack)  # outside any transaction, as the worker searches
        with self.factory() as session, session.begin():
            face = session.get(ProbeFace, face_id, with_for_update=True)
            if face is None:
                raise NotFound(f"probe face {face_id} not found")
            if face.searched:
                raise Conflict(f"face {face_id} was searched by someone else meanwhile")
            submission = visible_submission(session, actor, face.image.submission_id)
            # A record deleted since the index search is left out; the rest cannot go before this commit.
            hits = without_subjects(hits, deleted_subjects(session, {hit.subject_id for hit in hits}))
            session.add_all(
                Candidate(
                    probe_face_id=face_id,
                    rank=hit.rank,
                    score=hit.score,
                    above_threshold=hit.above_threshold,
                    subject_id=hit.subject_id,
                    template_id=hit.template_id,
                )
                for hit in hits
            )
            face.searched, face.poor_face_override, face.threshold = True, True, self.searcher.threshold
            audit.append(
                session,
                actor,
                "search",
                "probe_face",
                face_id,
                case_reference=submission.case_reference,
                purpose=submission.purpose,
                submission_id=submission.id,
                pack=pack,
                threshold=self.searcher.threshold,
                faces_searched=1,
                poor_face_override=True,
                override_reason=reason.strip(),
                quality_reasons=list(face.reasons),
                candidates_returned=len(hits),
                candidate_subject_ids=sorted(hit.subject_id for hit in hits),
            )
            return StoredSearch(
                face_id=face_id,
                candidates=len(hits),
                above_threshold=sum(1 for hit in hits if hit.above_threshold),
            )
