"""Human review (R3): decisions on probe faces, the review queue, the sprint report built from them,
and the disclosure of confirmed leads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from service.db.engine import read_session
from service.db.models import (
    AuditEvent,
    Candidate,
    PersonCandidate,
    ProbeFace,
    ProbeImage,
    ProbePerson,
    ReviewDecision,
    Subject,
    Submission,
)
from service.db.queries import confirmed_matches, rank_for_new_candidate, subject_scores
from service.db.vectors import embedding_from_bytes
from service.domain.events import ReviewDecided
from service.domain.review import Action, Outcome, ReviewConflict, ReviewState, next_state, require_reason
from service.domain.roles import Principal
from service.errors import InvalidRequest, NotFound
from service.services import audit
from service.services.submissions import visible_submission
from service.services.views import (
    DecisionHistoryItem,
    DecisionOut,
    Disclosure,
    Lead,
    PersonDecisionOut,
    QueueItem,
    SprintReport,
)

LEADS_NOTICE = "Confirmed matches are investigative leads, not identifications."

# A subscriber to ``ReviewDecided``, called in the decision's transaction.
DecidedHandler = Callable[[Session, ReviewDecided], None]


class ReviewService:
    def __init__(
        self,
        factory: sessionmaker[Session],
        on_decided: Sequence[DecidedHandler] = (),
        retention_days: float | None = None,
    ) -> None:
        self.factory = factory
        self.retention_days = retention_days  # when unconfirmed probes are purged: shown in the queue
        self.on_decided = tuple(on_decided)  # unknown groups: a confirmed no-match joins, a confirmed match leaves

    def decide(
        self,
        actor: Principal,
        face_id: int,
        action: str,
        outcome: str | None = None,
        candidate_id: int | None = None,
        note: str = "",
        expected_version: int | None = None,
        require_comparison: bool = False,
    ) -> DecisionOut:
        """Record one decision; a stale or concurrent conflicting decision raises ``review_conflict``.
        With ``require_comparison`` (the review pages) a confirmation needs the confirmer to have opened
        the comparison view of the first decision's candidate since that decision."""
        action_value, outcome_value = _parse(action, outcome)
        with self.factory() as session, session.begin():
            if require_comparison and action_value is Action.CONFIRM and not _compared(session, actor, face_id):
                raise ComparisonRequired(
                    "open the comparison of the chosen candidate before confirming: the decision rests on it"
                )
            return self._decide_face(
                session, actor, face_id, action_value, outcome_value, candidate_id, note, expected_version
            )

    def has_compared(self, actor: Principal, face_id: int) -> bool:
        """Whether ``actor`` opened the comparison view of the face's chosen candidate since the first
        decision named it (true when there is no candidate to compare: a no-match or inconclusive)."""
        with read_session(self.factory) as session:
            return _compared(session, actor, face_id)

    def _decide_face(
        self,
        session: Session,
        actor: Principal,
        face_id: int,
        action_value: Action,
        outcome_value: Outcome | None,
        candidate_id: int | None,
        note: str,
        expected_version: int | None,
        check_reason: bool = True,
    ) -> DecisionOut:
        """One face's decision, in the caller's transaction (``check_reason``: its note is checked here;
        a person's member faces are checked as the person)."""
        face = session.get(ProbeFace, face_id)
        if face is None:
            raise NotFound(f"probe face {face_id} not found")
        label = f"face {face_id}"
        state, version, target = _transition(
            face, label, action_value, actor, outcome_value, candidate_id is not None, expected_version
        )
        candidate = None
        if candidate_id is not None:
            candidate = session.get(Candidate, candidate_id)
            if candidate is None or candidate.probe_face_id != face_id:
                raise InvalidRequest(f"candidate {candidate_id} is not a candidate of face {face_id}")
        if check_reason:
            require_reason(action_value, outcome_value, candidate is not None and not candidate.above_threshold, note)
        _record(
            session,
            ProbeFace,
            face_id,
            label,
            action_value,
            target,
            version,
            outcome_value,
            candidate.id if candidate else None,
            actor,
        )
        decided_subject = candidate.subject_id if candidate else None
        if action_value is not Action.REVIEW and face.review_candidate_id is not None:
            first = session.get(Candidate, face.review_candidate_id)
            decided_subject = first.subject_id if first else None
        decision = ReviewDecision(
            probe_face_id=face_id,
            action=action_value.value,
            outcome=(outcome_value.value if outcome_value else face.review_outcome),
            candidate_id=candidate.id if candidate else face.review_candidate_id,
            subject_id=decided_subject,
            note=note[:4000],
            username=actor.username,
            role=str(actor.role),
            from_state=state.value,
            to_state=target.value,
        )
        session.add(decision)
        session.flush()
        event = ReviewDecided(
            face_id=face_id,
            state=target,
            outcome=Outcome(decision.outcome) if decision.outcome else None,
            subject_id=decided_subject,
            actor=actor,
        )
        for handler in self.on_decided:  # before the audit append: the linking lock precedes the chain's
            handler(session, event)
        audit.append(
            session,
            actor,
            "review_decision",
            "probe_face",
            face_id,
            decision=action_value.value,
            outcome=decision.outcome,
            candidate_id=decision.candidate_id,
            subject_id=decided_subject,
            from_state=state.value,
            to_state=target.value,
            note_sha256=audit.note_digest(note),
        )
        return DecisionOut(
            face_id=face_id,
            decision_id=decision.id,
            state=target.value,
            version=version + 1,
            outcome=decision.outcome,
            candidate_id=decision.candidate_id,
        )

    def decide_person(
        self,
        actor: Principal,
        person_id: int,
        action: str,
        outcome: str | None = None,
        candidate_id: int | None = None,
        note: str = "",
        expected_version: int | None = None,
    ) -> PersonDecisionOut:
        """One decision on a person of an incident, applied to every member face in one transaction.

        A ``possible_match`` names one of the person's candidates; each member face records it
        against its own candidate for that subject (added, with the face's exact score, where the
        face's own list did not hold it). Member faces a reviewer has already taken elsewhere (their
        state differs from the person's) are left as they are and listed as skipped.
        """
        action_value, outcome_value = _parse(action, outcome)
        with self.factory() as session, session.begin():
            person = session.get(ProbePerson, person_id)
            if person is None:
                raise NotFound(f"person {person_id} not found")
            label = f"person {person_id}"
            state, version, target = _transition(
                person, label, action_value, actor, outcome_value, candidate_id is not None, expected_version
            )
            chosen = None
            if candidate_id is not None:
                chosen = session.get(PersonCandidate, candidate_id)
                if chosen is None or chosen.person_id != person_id:
                    raise InvalidRequest(f"candidate {candidate_id} is not a candidate of person {person_id}")
            require_reason(action_value, outcome_value, chosen is not None and not chosen.above_threshold, note)
            values = _record(
                session,
                ProbePerson,
                person_id,
                label,
                action_value,
                target,
                version,
                outcome_value,
                chosen.id if chosen else None,
                actor,
            )
            decided: list[DecisionOut] = []
            skipped: list[int] = []
            reranked: dict[str, list[int]] = {}  # a face given a candidate: its list's previous order
            for face in list(person.faces):
                if face.review_state != state.value:
                    skipped.append(face.id)
                    continue
                face_candidate = None
                if chosen is not None:
                    face_candidate, previous = _face_candidate(session, face, chosen.subject_id)
                    if previous is not None:
                        reranked[str(face.id)] = previous
                decided.append(
                    self._decide_face(
                        session, actor, face.id, action_value, outcome_value, face_candidate, note, None, False
                    )
                )
            audit.append(
                session,
                actor,
                "person_review_decision",
                "probe_person",
                person_id,
                decision=action_value.value,
                outcome=values.get("review_outcome", person.review_outcome),
                subject_id=chosen.subject_id if chosen else None,
                face_ids=[d.face_id for d in decided],
                skipped_face_ids=skipped,
                **({"previous_ranking": reranked} if reranked else {}),
                from_state=state.value,
                to_state=target.value,
                note_sha256=audit.note_digest(note),
            )
            return PersonDecisionOut(
                person_id=person_id,
                state=target.value,
                version=version + 1,
                outcome=values.get("review_outcome", person.review_outcome),
                candidate_id=values.get("review_candidate_id", person.review_candidate_id),
                faces=decided,
                skipped_faces=skipped,
            )

    def history(self, face_id: int) -> list[DecisionHistoryItem]:
        with read_session(self.factory) as session:
            if session.get(ProbeFace, face_id) is None:
                raise NotFound(f"probe face {face_id} not found")
            rows = session.scalars(
                select(ReviewDecision).where(ReviewDecision.probe_face_id == face_id).order_by(ReviewDecision.id)
            )
            return [
                DecisionHistoryItem(
                    id=d.id,
                    action=d.action,
                    outcome=d.outcome,
                    candidate_id=d.candidate_id,
                    subject_id=d.subject_id,
                    note=d.note,
                    username=d.username,
                    role=d.role,
                    from_state=d.from_state,
                    to_state=d.to_state,
                    at=d.created_at,
                )
                for d in rows
            ]

    def queue(self, state: str, limit: int = 100, above_threshold: bool | None = None) -> list[QueueItem]:
        """Faces waiting for a decision (searched, with at least one candidate) in ``state``: those with a
        candidate above the threshold first, then oldest first; ``above_threshold`` keeps only those with
        (True) or without (False) one. Each with what a reviewer triages by."""
        best = select(func.max(Candidate.score)).where(Candidate.probe_face_id == ProbeFace.id).scalar_subquery()
        above = (
            select(Candidate.id)
            .where(Candidate.probe_face_id == ProbeFace.id, Candidate.above_threshold.is_(True))
            .exists()
        )
        confirmer = (
            select(ReviewDecision.username)
            .where(ReviewDecision.probe_face_id == ProbeFace.id, ReviewDecision.action == Action.CONFIRM.value)
            .order_by(ReviewDecision.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        chosen = aliased(Candidate)
        query = (
            select(
                ProbeFace,
                ProbeImage.submission_id,
                ProbeImage.file_name,
                Submission.case_reference,
                Submission.created_at,
                best,
                above,
                confirmer,
                chosen.subject_id,
                Subject.custody_reference,
            )
            .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
            .join(Submission, Submission.id == ProbeImage.submission_id)
            .outerjoin(chosen, chosen.id == ProbeFace.review_candidate_id)
            .outerjoin(Subject, Subject.id == chosen.subject_id)
            .where(ProbeFace.review_state == state, ProbeFace.searched.is_(True))
            .where(select(Candidate.id).where(Candidate.probe_face_id == ProbeFace.id).exists())
        )
        if above_threshold is not None:
            query = query.where(above if above_threshold else ~above)
        with read_session(self.factory) as session:
            rows = session.execute(query.order_by(above.desc(), ProbeFace.id).limit(limit)).all()
        kept = timedelta(days=self.retention_days) if self.retention_days else None
        return [
            QueueItem(
                face_id=face.id,
                submission_id=submission_id,
                case_reference=case_reference,
                file=file_name,
                face_index=face.face_index,
                state=face.review_state,
                first_reviewer=face.first_reviewer,
                outcome=face.review_outcome,
                best_score=round(float(best_score), 4),
                above_threshold=bool(has_above),
                threshold=face.threshold,
                retain_until=created_at + kept if kept and face.review_state != ReviewState.CONFIRMED else None,
                confirmer=confirmed_by,
                subject_id=subject_id,
                custody_reference=reference,
            )
            for (
                face,
                submission_id,
                file_name,
                case_reference,
                created_at,
                best_score,
                has_above,
                confirmed_by,
                subject_id,
                reference,
            ) in rows
        ]

    def report(self, actor: Principal, submission_id: int) -> SprintReport:
        """The sprint's figures, for a submission ``actor`` may see."""
        with read_session(self.factory) as session:
            return sprint_report(session, visible_submission(session, actor, submission_id), actor)

    def disclose(self, actor: Principal, submission_id: int, recipient: str, reason: str = "") -> Disclosure:
        """Export the confirmed matches of a sprint to a named recipient (recorded with the recipient)."""
        with self.factory() as session, session.begin():
            submission = visible_submission(session, actor, submission_id)
            leads = [
                Lead(
                    face_id=face.id,
                    file=image.file_name,
                    retailer=image.retailer,
                    store=image.store,
                    incident_reference=image.incident_reference,
                    captured_at=image.captured_at,
                    custody_reference=subject.custody_reference,
                    score=round(candidate.score, 4),
                )
                for face, candidate, subject, image, _ in session.execute(
                    confirmed_matches(submission_id=submission_id)
                ).all()
            ]
            audit.append(
                session,
                actor,
                "disclosure",
                "submission",
                submission_id,
                recipient=recipient,
                reason=reason,
                case_reference=submission.case_reference,
                leads=len(leads),
                face_ids=[lead.face_id for lead in leads],
            )
        return Disclosure(submission_id=submission_id, recipient=recipient, notice=LEADS_NOTICE, leads=leads)


def _parse(action: str, outcome: str | None) -> tuple[Action, Outcome | None]:
    try:
        return Action(action), (Outcome(outcome) if outcome else None)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc


def _transition(
    row: ProbeFace | ProbePerson,
    label: str,
    action: Action,
    actor: Principal,
    outcome: Outcome | None,
    candidate_given: bool,
    expected_version: int | None,
) -> tuple[ReviewState, int, ReviewState]:
    """A face's or a person's review state and version, and the state ``action`` takes it to (or the
    typed error that refuses it)."""
    state, version = ReviewState(row.review_state), int(row.review_version)
    if expected_version is not None and expected_version != version:
        raise ReviewConflict(f"{label} changed since you loaded it (version {version})")
    return state, version, next_state(state, action, actor, row.first_reviewer, outcome, candidate_given)


def _record(
    session: Session,
    model: type[ProbeFace] | type[ProbePerson],
    row_id: int,
    label: str,
    action: Action,
    target: ReviewState,
    version: int,
    outcome: Outcome | None,
    candidate_id: int | None,
    actor: Principal,
) -> dict[str, Any]:
    """Set the review columns of a decision on a face or a person, if nobody decided on it meanwhile;
    returns what it set."""
    values: dict[str, Any] = {"review_state": target.value, "review_version": version + 1}
    if action is Action.REVIEW:
        values |= {
            "review_outcome": outcome.value if outcome else None,
            "review_candidate_id": candidate_id,
            "first_reviewer": actor.username,
        }
    elif target is ReviewState.UNREVIEWED:
        values |= {"review_outcome": None, "review_candidate_id": None, "first_reviewer": None}
    changed = session.execute(update(model).where(model.id == row_id, model.review_version == version).values(**values))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise ReviewConflict(f"{label} was decided by someone else at the same time")
    return values


def _face_candidate(session: Session, face: ProbeFace, subject_id: int) -> tuple[int, list[int] | None]:
    """The id of the face's candidate for ``subject_id``, added at its rank by score if it has none
    (then with the list's previous order of candidate ids)."""
    existing = session.scalar(
        select(Candidate.id).where(Candidate.probe_face_id == face.id, Candidate.subject_id == subject_id)
    )
    if existing is not None:
        return int(existing), None
    score = -1.0
    if face.embedding is not None:
        found = float(
            subject_scores(session, embedding_from_bytes(face.embedding)[None, :], [subject_id], face.pack_id)[0, 0]
        )
        score = found if np.isfinite(found) else score
    rank, previous = rank_for_new_candidate(session, face.id, score)
    candidate = Candidate(
        probe_face_id=face.id,
        rank=rank,
        score=score,
        above_threshold=score >= face.threshold,
        subject_id=subject_id,
    )
    session.add(candidate)
    session.flush()
    return int(candidate.id), previous


class ComparisonRequired(InvalidRequest):
    code = "comparison_required"


def _compared(session: Session, actor: Principal, face_id: int) -> bool:
    face = session.get(ProbeFace, face_id)
    if face is None:
        raise NotFound(f"probe face {face_id} not found")
    if face.review_candidate_id is None:
        return True
    since = session.scalar(
        select(func.max(ReviewDecision.created_at)).where(
            ReviewDecision.probe_face_id == face_id, ReviewDecision.action == Action.REVIEW.value
        )
    )
    views = session.scalars(
        select(AuditEvent.details).where(
            AuditEvent.action == "candidate_image_viewed",
            AuditEvent.object_type == "candidate",
            AuditEvent.object_id == str(face.review_candidate_id),
            AuditEvent.actor == actor.username,
            *([AuditEvent.at >= since] if since is not None else []),
        )
    )
    return any(details.get("aligned") for details in views)


def remaining_figures(session: Session, sid: int) -> dict[str, int]:
    """The sprint-report counts of what submission ``sid`` holds now (the purged part aside)."""
    images = select(ProbeImage.id).where(ProbeImage.submission_id == sid)
    faces = select(ProbeFace).join(ProbeImage).where(ProbeImage.submission_id == sid).subquery()

    def count(stmt: Any) -> int:
        return int(session.scalar(stmt) or 0)

    above = select(Candidate.probe_face_id).where(Candidate.above_threshold.is_(True))
    confirmed_match = (faces.c.review_state == "confirmed") & (faces.c.review_outcome == "possible_match")
    return {
        "images_supplied": count(select(func.count()).select_from(images.subquery())),
        "images_failed": count(
            select(func.count()).where(ProbeImage.submission_id == sid, ProbeImage.status == "failed")
        ),
        "images_with_face": count(select(func.count(func.distinct(faces.c.probe_image_id)))),
        "faces": count(select(func.count()).select_from(faces)),
        "usable_faces": count(select(func.count()).select_from(faces).where(faces.c.usable.is_(True))),
        "faces_searched": count(select(func.count()).select_from(faces).where(faces.c.searched.is_(True))),
        "faces_with_candidate_above_threshold": count(
            select(func.count()).select_from(faces).where(faces.c.id.in_(above))
        ),
        "possible_matches": count(
            select(func.count()).select_from(faces).where(faces.c.review_outcome == "possible_match")
        ),
        "confirmed_matches": count(select(func.count()).select_from(faces).where(confirmed_match)),
        "distinct_subjects_confirmed": count(
            select(func.count(func.distinct(Candidate.subject_id)))
            .join(faces, faces.c.review_candidate_id == Candidate.id)
            .where(confirmed_match)
        ),
        "faces_awaiting_review": count(
            select(func.count())
            .select_from(faces)
            .where(faces.c.review_state == "unreviewed", faces.c.searched.is_(True))
        ),
        "faces_awaiting_confirmation": count(
            select(func.count()).select_from(faces).where(faces.c.review_state == "awaiting_confirmation")
        ),
        "images_in_progress": count(
            select(func.count()).where(ProbeImage.submission_id == sid, ProbeImage.status.in_(("queued", "processing")))
        ),
        "poor_faces": count(select(func.count()).select_from(faces).where(faces.c.usable.is_(False))),
        "faces_not_searched": count(select(func.count()).select_from(faces).where(faces.c.searched.is_(False))),
        "faces_with_nothing_above_threshold": count(
            select(func.count()).select_from(faces).where(faces.c.searched.is_(True), faces.c.id.not_in(above))
        ),
        "no_matches": count(select(func.count()).select_from(faces).where(faces.c.review_outcome == "no_match")),
        "inconclusive": count(select(func.count()).select_from(faces).where(faces.c.review_outcome == "inconclusive")),
    }


# A purged face awaits nothing (and the purge never takes unfinished work): these count only what remains.
NOT_KEPT_WHEN_PURGED = frozenset({"faces_awaiting_review", "faces_awaiting_confirmation", "images_in_progress"})


def purged_part(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What a purge took out of a submission's figures (``before`` and ``after`` it, in its transaction)."""
    return {key: before[key] - after[key] for key in before if key not in NOT_KEPT_WHEN_PURGED}


def sprint_report(session: Session, submission: Submission, actor: Principal) -> SprintReport:
    """The figures the Met reported for its sprints, for one submission: what it holds now plus the
    counts kept of what the retention purge deleted, so "images supplied" stays what was supplied;
    with the threshold and pack it was searched with, who submitted it and when, and who asked."""
    purged = submission.purged_figures or {}
    figures = {key: value + int(purged.get(key, 0)) for key, value in remaining_figures(session, submission.id).items()}
    thresholds = session.scalars(
        select(func.distinct(ProbeFace.threshold)).join(ProbeImage).where(ProbeImage.submission_id == submission.id)
    ).all()
    return SprintReport(
        submission_id=submission.id,
        case_reference=submission.case_reference,
        purpose=submission.purpose,
        submitted_by=submission.submitted_by,
        submitted_at=submission.created_at,
        pack_id=submission.pack_id,
        threshold=max(thresholds) if thresholds else None,
        generated_at=datetime.now(UTC),
        generated_by=actor.username,
        images_purged=int(purged.get("images_supplied", 0)),
        faces_purged=int(purged.get("faces", 0)),
        purged_at=submission.purged_at,
        **figures,
    )
