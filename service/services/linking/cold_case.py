"""Cold case: when a custody image is enrolled, unknown faces from the retention window that the new
template matches get a candidate and go (back) to the review queue."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Candidate, GroupMember, ProbeFace, ProbeImage, ReviewDecision, Submission
from service.db.queries import rank_for_new_candidate
from service.domain.events import TemplateEnrolled
from service.domain.roles import Principal
from service.services import audit
from service.services.linking.clock import now
from service.services.linking.held import HeldFaces
from service.services.linking.models import ColdCaseHit

log = logging.getLogger(__name__)


class ColdCase:
    def __init__(
        self,
        factory: sessionmaker[Session],
        held: HeldFaces,
        *,
        enabled: bool,
        match_threshold: float,
        retention_days: float,
    ) -> None:
        self.factory = factory
        self.held = held
        self.enabled = enabled
        self.match_threshold = match_threshold
        self.retention_days = retention_days

    def template_enrolled(self, event: TemplateEnrolled) -> list[ColdCaseHit]:
        """After an enrolment: unknown faces from the retention window that the new template matches get
        a candidate and go (back) to the review queue."""
        actor, subject_id, template_id, embedding = event.actor, event.subject_id, event.template_id, event.embedding
        if not self.enabled or event.pack_id != self.held.pack_id:
            return []
        with self.factory() as session, session.begin(), self.held.synced(session):
            ids, sims = self.held.index.similarities(embedding)
        hits = {int(f): float(s) for f, s in zip(ids, sims, strict=True) if s >= self.match_threshold}
        if not hits:
            return []
        cutoff = now() - timedelta(days=self.retention_days)
        found: list[ColdCaseHit] = []
        with self.factory() as session, session.begin():
            rows = session.execute(
                select(ProbeFace, Submission.created_at, GroupMember.group_id)
                .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
                .join(Submission, Submission.id == ProbeImage.submission_id)
                .join(GroupMember, GroupMember.probe_face_id == ProbeFace.id)
                .where(ProbeFace.id.in_(sorted(hits)))
                .order_by(ProbeFace.id)
            ).all()
            for face, created_at, group_id in rows:
                if created_at < cutoff:
                    continue  # outside the retention window: due for purge, not for review
                exists = session.scalar(
                    select(Candidate.id).where(Candidate.probe_face_id == face.id, Candidate.template_id == template_id)
                )
                if exists is not None:
                    continue
                score = hits[int(face.id)]
                rank, previous = rank_for_new_candidate(session, face.id, score)
                candidate = Candidate(
                    probe_face_id=face.id,
                    rank=rank,
                    score=score,
                    above_threshold=True,
                    subject_id=subject_id,
                    template_id=template_id,
                )
                session.add(candidate)
                session.flush()
                reopened_from = self._reopen_for_review(session, actor, face, candidate, score)
                audit.append(
                    session,
                    actor,
                    "cold_case_candidate",
                    "probe_face",
                    face.id,
                    candidate_id=candidate.id,
                    subject_id=subject_id,
                    template_id=template_id,
                    score=round(score, 4),
                    rank=rank,
                    previous_ranking=previous,
                    threshold=self.match_threshold,
                    group_id=int(group_id),
                    reopened_from=reopened_from,
                )
                found.append(
                    ColdCaseHit(
                        face_id=int(face.id),
                        candidate_id=int(candidate.id),
                        group_id=int(group_id),
                        score=round(score, 4),
                        reopened_from=reopened_from,
                    )
                )
        if found:
            log.info("cold case: %d unknown faces have a new candidate (subject %d)", len(found), subject_id)
        return found

    @staticmethod
    def _reopen_for_review(
        session: Session, actor: Principal, face: ProbeFace, candidate: Candidate, score: float
    ) -> str | None:
        """A decided face with a new lead goes back to ``unreviewed``, as a recorded decision."""
        if face.review_state == "unreviewed":
            return None
        version = int(face.review_version)
        from_state = str(face.review_state)
        changed = session.execute(
            update(ProbeFace)
            .where(ProbeFace.id == face.id, ProbeFace.review_version == version)
            .values(
                review_state="unreviewed",
                review_version=version + 1,
                review_outcome=None,
                review_candidate_id=None,
                first_reviewer=None,
            )
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            return None  # decided concurrently: the new candidate is there for whoever looks next
        session.add(
            ReviewDecision(
                probe_face_id=face.id,
                action="reopen",
                outcome=None,
                candidate_id=candidate.id,
                subject_id=candidate.subject_id,
                note=f"cold case: a newly enrolled custody image scores {score:.3f} (candidate {candidate.id})",
                username=actor.username,
                role=str(actor.role),
                from_state=from_state,
                to_state="unreviewed",
            )
        )
        session.flush()
        return from_state
