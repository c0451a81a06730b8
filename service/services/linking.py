"""The prolific-offender picture: unknown repeat offenders, appearances, cold-case re-search.

* **Unknown faces.** A usable probe face with no candidate above the pack's threshold (or one whose
  review ``no_match`` is confirmed) is an unknown. The worker links it, in the transaction that
  stores it, to the unknown faces already held (``service.domain.linking``: incremental and
  conservative); each unknown belongs to one ``unknown_groups`` row (a group of one is a singleton).
* **In memory.** Every process holds the unknown faces of its pack in an ``UnknownFaceIndex``,
  loaded from the database on first use. Every change to the groups replaces
  ``linking_state.version`` with a random stamp in the same transaction; a process whose stamp
  differs reconciles (drops faces gone, loads faces new, re-reads every face's group) before it
  links. Changes take the ``linking_state`` row lock first, so linkers are serialised across
  processes on SQLite and PostgreSQL alike; a rolled-back change leaves a stamp that no longer
  matches, so the next use reconciles.
* **Reviewers** confirm, split and merge groups (``group_decisions`` + the audit trail); automatic
  linking never merges a group a reviewer has decided on.
* **Cold case.** When a custody image is enrolled, the unknown faces from the retention window are
  scored against the new template (one dot product each); a face at or above the pack's threshold
  gets a new candidate and, if it had been decided, is reopened (a recorded decision) so that it
  enters the review queue.
* **Appearances.** A confirmed ``possible_match`` links a probe face (retailer, store, incident,
  capture time) to a subject; a group member links it to an unknown group. The prolific view ranks
  both by distinct incidents, retailers and stores in a period and area.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.config import LinkingSettings, Settings
from service.db.models import (
    Candidate,
    GroupDecision,
    GroupMember,
    LinkingState,
    ProbeFace,
    ProbeImage,
    ReviewDecision,
    Subject,
    Submission,
    UnknownGroup,
)
from service.db.queries import confirmed_matches
from service.db.vectors import embedding_from_bytes
from service.domain.linking import LinkDecision, LinkRule, UnknownFaceIndex, normalised
from service.domain.roles import Permission, Principal, Role
from service.domain.search import FaceOutcome
from service.embeddings.packs import PackManifest
from service.errors import Conflict, Forbidden, InvalidRequest, NotFound
from service.services import audit

log = logging.getLogger(__name__)

LINKER = Principal(username="service:linking", role=Role.ADMIN, via="service")
LOAD_CHUNK = 5000


def _record_decision(
    session: Session,
    actor: Principal,
    group_id: int,
    action: str,
    other_group_ids: list[int],
    face_ids: list[int],
    note: str,
) -> None:
    """Store a reviewer's decision on a group (its audit event is written beside it)."""
    session.add(
        GroupDecision(
            group_id=group_id,
            action=action,
            other_group_ids=other_group_ids,
            face_ids=face_ids,
            note=note[:4000],
            username=actor.username,
            role=str(actor.role),
        )
    )


class GroupConflict(Conflict):
    code = "group_conflict"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(when: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone-aware columns: they are UTC."""
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _iso(when: datetime | None) -> str | None:
    aware = _aware(when)
    return aware.isoformat() if aware else None


def _note_hash(note: str) -> str | None:
    return hashlib.sha256(note.encode()).hexdigest() if note else None


def cohesion(vectors: NDArray[np.float32]) -> NDArray[np.float64]:
    """Each row's mean cosine to the other rows (1.0 for a single row)."""
    if len(vectors) < 2:
        return np.ones(len(vectors), np.float64)
    matrix = normalised(vectors).astype(np.float64)
    total = matrix.sum(axis=0)
    return np.asarray((matrix @ total - 1.0) / (len(matrix) - 1), dtype=np.float64)


def incident_key(retailer: str, store: str, incident: str, submission_id: int) -> tuple[str, ...]:
    """Stills with the same retailer and incident reference are one incident; without a reference,
    a submission's stills from one store are."""
    if incident.strip():
        return ("ref", retailer.strip().lower(), incident.strip().lower())
    return ("submission", str(submission_id), retailer.strip().lower(), store.strip().lower())


def _require_reviewer(actor: Principal) -> None:
    if not (actor.can(Permission.REVIEW) or actor.can(Permission.CONFIRM)):
        raise Forbidden(f"role {actor.role} may not decide on unknown groups")


class LinkingService:
    def __init__(
        self,
        factory: sessionmaker[Session],
        pack_id: str,
        dim: int,
        settings: LinkingSettings,
        match_threshold: float,
        retention_days: float,
    ) -> None:
        self.factory = factory
        self.pack_id = pack_id
        self.enabled = settings.enabled
        self.rule = LinkRule(settings.threshold, settings.nearest, settings.margin, settings.merge_threshold)
        self.match_threshold = match_threshold
        self.retention_days = retention_days
        self.index = UnknownFaceIndex(dim)
        self._version: int | None = None  # the linking_state stamp the index reflects; None: reload
        self._member_ids: dict[int, int] = {}  # face id -> its group_members row id, for the faces held
        self._mutex = threading.RLock()

    @classmethod
    def from_settings(
        cls, settings: Settings, factory: sessionmaker[Session], manifest: PackManifest
    ) -> LinkingService:
        return cls(
            factory,
            manifest.id,
            manifest.embedding_dim,
            settings.linking,
            manifest.operating_threshold,
            settings.retention.days,
        )

    # -- the lock, the stamp and the in-memory index ------------------------------------------
    def _lock(self, session: Session) -> LinkingState:
        """Take the linking lock (the pack's ``linking_state`` row) for this transaction."""
        state = session.get(LinkingState, self.pack_id, with_for_update=True, populate_existing=True)
        if state is None:
            try:
                with session.begin_nested():
                    session.add(LinkingState(pack_id=self.pack_id, version=0))
            except IntegrityError:
                pass  # another transaction created it first
            state = session.get(LinkingState, self.pack_id, with_for_update=True, populate_existing=True)
            assert state is not None
        return state

    def _bump(self, state: LinkingState) -> None:
        state.version = secrets.randbits(62)
        self._version = int(state.version)

    def _sync(self, session: Session, state: LinkingState) -> None:
        """Bring the in-memory index to the database's groups (as this transaction sees them)."""
        if self._version == int(state.version):
            return
        rows = session.execute(
            select(GroupMember.probe_face_id, GroupMember.group_id, GroupMember.id)
            .join(UnknownGroup, UnknownGroup.id == GroupMember.group_id)
            .where(UnknownGroup.pack_id == self.pack_id)
        ).all()
        mapping = {int(face): int(group) for face, group, _ in rows}
        member_ids = {int(face): int(member) for face, _, member in rows}
        # A held face is stale if it left, or if its membership row is another one: SQLite may give a
        # purged face's id to a new face, but never a member row's id (AUTOINCREMENT).
        held = set(self.index.face_ids())
        stale = {f for f in held if member_ids.get(f) != self._member_ids.get(f)}
        self.index.remove(stale)
        missing = sorted(mapping.keys() - (held - stale))
        for start in range(0, len(missing), LOAD_CHUNK):
            chunk = missing[start : start + LOAD_CHUNK]
            loaded = session.execute(
                select(ProbeFace.id, ProbeFace.embedding).where(
                    ProbeFace.id.in_(chunk), ProbeFace.embedding.is_not(None)
                )
            ).all()
            if loaded:
                ids = [int(r[0]) for r in loaded]
                vectors = np.stack([embedding_from_bytes(r[1] or b"") for r in loaded])
                self.index.add(ids, vectors, [mapping[i] for i in ids])
        self.index.assign({f: g for f, g in mapping.items() if f in self.index})
        self._member_ids = {f: m for f, m in member_ids.items() if f in self.index}
        self._version = int(state.version)
        log.info("unknown-face index reconciled: %d faces", len(self.index))

    def _invalidate(self) -> None:
        self._version = None

    def _refresh_groups(self, session: Session, group_ids: Iterable[int], *, reopen: bool) -> list[int]:
        """Size, representative and version of changed groups; empty groups go. Returns reopened groups."""
        reopened = []
        now = _now()
        for gid in sorted(set(group_ids)):
            group = session.get(UnknownGroup, gid)
            if group is None:
                continue
            members = self.index.members(gid)
            if not members:
                session.delete(group)
                continue
            group.size = len(members)
            group.representative_face_id = self.index.representative(gid)
            group.version = int(group.version or 0) + 1
            group.updated_at = now
            if reopen and group.status == "confirmed":
                group.status = "open"
                reopened.append(gid)
        session.flush()
        return reopened

    def _new_group(self, session: Session, decided_by: str | None = None) -> int:
        group = UnknownGroup(pack_id=self.pack_id, status="open", size=0, version=0, decided_by=decided_by)
        session.add(group)
        session.flush()
        return int(group.id)

    def _may_merge(self, session: Session, gid: int) -> bool:
        group = session.get(UnknownGroup, gid)
        return group is not None and group.decided_by is None and group.status == "open"

    # -- automatic linking ---------------------------------------------------------------------
    def link_new_faces(self, session: Session, image_id: int, faces: Sequence[tuple[int, FaceOutcome]]) -> None:
        """Worker hook, inside the transaction that stores an image's faces: link its unmatched faces."""
        if not self.enabled:
            return
        eligible = [
            (face_id, outcome.record.embedding)
            for face_id, outcome in faces
            if outcome.searched
            and outcome.record.quality.usable
            and outcome.record.pack_id == self.pack_id
            and not any(c.above_threshold for c in outcome.candidates)
        ]
        if eligible:
            self._link(session, eligible, reason="unmatched", same_still=True, object_id=image_id)

    def _link(
        self,
        session: Session,
        faces: Sequence[tuple[int, NDArray[np.float32]]],
        *,
        reason: str,
        same_still: bool,
        object_id: int,
        decided_by: Principal | None = None,
    ) -> list[LinkDecision]:
        state = self._lock(session)
        with self._mutex:
            try:
                self._sync(session, state)
                ids = [face_id for face_id, _ in faces if face_id not in self.index]
                if not ids:
                    return []
                vectors = np.stack([vector for face_id, vector in faces if face_id in ids])
                decisions = self.index.link(
                    ids,
                    vectors,
                    self.rule,
                    lambda: self._new_group(session),
                    same_still=same_still,
                    may_merge=lambda gid: self._may_merge(session, gid),
                )
                for decision in decisions:
                    if decision.merged:
                        self._persist_auto_merge(session, decision)
                    member = GroupMember(
                        group_id=decision.group_id,
                        probe_face_id=decision.face_id,
                        score=decision.score,
                        nearest_face_id=decision.nearest_face_id,
                        nearest_score=decision.nearest_score,
                        linked_by="auto",
                        reason=reason,
                    )
                    session.add(member)
                    session.flush()
                    self._member_ids[decision.face_id] = int(member.id)
                reopened = self._refresh_groups(session, {d.group_id for d in decisions}, reopen=True)
                self._bump(state)
            except BaseException:
                self._invalidate()
                raise
        audit.append(
            session,
            LINKER,
            "unknown_faces_linked",
            "probe_image" if reason == "unmatched" else "probe_face",
            object_id,
            reason=reason,
            decided_by=decided_by.username if decided_by else None,
            links=[d.to_dict() for d in decisions],
            reopened_groups=reopened,
            rule={"threshold": self.rule.threshold, "nearest": self.rule.nearest, "margin": self.rule.margin},
        )
        return decisions

    def _persist_auto_merge(self, session: Session, decision: LinkDecision) -> None:
        moved = list(
            session.scalars(select(GroupMember.probe_face_id).where(GroupMember.group_id.in_(decision.merged)))
        )
        session.execute(
            update(GroupMember).where(GroupMember.group_id.in_(decision.merged)).values(group_id=decision.group_id)
        )
        session.execute(delete(UnknownGroup).where(UnknownGroup.id.in_(decision.merged)))
        session.add(
            GroupDecision(
                group_id=decision.group_id,
                action="merge",
                other_group_ids=list(decision.merged),
                face_ids=sorted(int(f) for f in moved),
                note=f"automatic: face {decision.face_id} links both groups",
                username="auto",
                role="service",
            )
        )
        session.flush()

    def after_review(self, session: Session, actor: Principal, face_id: int, state: str, outcome: str | None) -> None:
        """Review hook: a confirmed no-match becomes an unknown; a confirmed match leaves its group."""
        if state != "confirmed":
            return
        if outcome == "possible_match":
            self._identified(session, actor, face_id)
            return
        if outcome != "no_match" or not self.enabled:
            return
        face = session.get(ProbeFace, face_id)
        if face is None or face.embedding is None or not face.usable or face.pack_id != self.pack_id:
            return
        if session.scalar(select(GroupMember.id).where(GroupMember.probe_face_id == face_id)) is not None:
            return
        self._link(
            session,
            [(face_id, embedding_from_bytes(face.embedding))],
            reason="no_match",
            same_still=False,
            object_id=face_id,
            decided_by=actor,
        )

    def _identified(self, session: Session, actor: Principal, face_id: int) -> None:
        member = session.scalar(select(GroupMember).where(GroupMember.probe_face_id == face_id))
        if member is None:
            return
        state = self._lock(session)
        with self._mutex:
            try:
                self._sync(session, state)
                gid = int(member.group_id)
                session.delete(member)
                session.flush()
                self.index.remove([face_id])
                self._member_ids.pop(face_id, None)
                self._refresh_groups(session, [gid], reopen=False)
                self._bump(state)
            except BaseException:
                self._invalidate()
                raise
        face = session.get(ProbeFace, face_id)
        candidate = session.get(Candidate, face.review_candidate_id) if face and face.review_candidate_id else None
        subject_id = candidate.subject_id if candidate else None
        session.add(
            GroupDecision(
                group_id=gid,
                action="identified",
                other_group_ids=[],
                face_ids=[face_id],
                note=f"confirmed match to subject {subject_id}",
                username=actor.username,
                role=str(actor.role),
            )
        )
        audit.append(
            session, actor, "unknown_face_identified", "probe_face", face_id, group_id=gid, subject_id=subject_id
        )

    # -- cold case -----------------------------------------------------------------------------
    def cold_case(
        self, actor: Principal, subject_id: int, template_id: int, pack_id: str, embedding: NDArray[np.float32]
    ) -> list[dict[str, Any]]:
        """Gallery hook after an enrolment: unknown faces from the retention window that the new template
        matches get a candidate and go (back) to the review queue."""
        if not self.enabled or pack_id != self.pack_id:
            return []
        with self.factory() as session, session.begin():
            state = self._lock(session)
            with self._mutex:
                try:
                    self._sync(session, state)
                except BaseException:
                    self._invalidate()
                    raise
                ids, sims = self.index.similarities(embedding)
        hits = {int(f): float(s) for f, s in zip(ids, sims, strict=True) if s >= self.match_threshold}
        if not hits:
            return []
        cutoff = _now() - timedelta(days=self.retention_days)
        found: list[dict[str, Any]] = []
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
                created = _aware(created_at)
                if created is None or created < cutoff:
                    continue  # outside the retention window: due for purge, not for review
                exists = session.scalar(
                    select(Candidate.id).where(Candidate.probe_face_id == face.id, Candidate.template_id == template_id)
                )
                if exists is not None:
                    continue
                score = hits[int(face.id)]
                rank = int(
                    session.scalar(select(func.max(Candidate.rank)).where(Candidate.probe_face_id == face.id)) or 0
                )
                candidate = Candidate(
                    probe_face_id=face.id,
                    rank=rank + 1,
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
                    threshold=self.match_threshold,
                    group_id=int(group_id),
                    reopened_from=reopened_from,
                )
                found.append(
                    {
                        "face_id": int(face.id),
                        "candidate_id": int(candidate.id),
                        "group_id": int(group_id),
                        "score": round(score, 4),
                        "reopened_from": reopened_from,
                    }
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

    # -- retention -----------------------------------------------------------------------------
    def purge_begin(self, session: Session) -> None:
        """Retention hook at the start of the purge transaction: take the linking lock first."""
        self._lock(session)

    def purge_end(self, session: Session) -> dict[str, int]:
        """Retention hook after the purge's deletes: purged faces left their groups (FK cascade);
        fix the groups' sizes and representatives, and delete the groups left empty."""
        session.flush()
        actual = {
            int(g): int(n)
            for g, n in session.execute(select(GroupMember.group_id, func.count()).group_by(GroupMember.group_id)).all()
        }
        changed = [
            (int(gid), int(size), str(pack))
            for gid, size, pack in session.execute(
                select(UnknownGroup.id, UnknownGroup.size, UnknownGroup.pack_id)
            ).all()
            if actual.get(int(gid), 0) != int(size)
        ]
        stats = {"unknown_faces_removed": 0, "unknown_groups_deleted": 0}
        if not changed:
            return stats
        stats["unknown_faces_removed"] = sum(max(size - actual.get(gid, 0), 0) for gid, size, _ in changed)
        stats["unknown_groups_deleted"] = sum(1 for gid, _, _ in changed if actual.get(gid, 0) == 0)
        state = self._lock(session)
        with self._mutex:
            try:
                self._invalidate()
                self._sync(session, state)
                ours = [gid for gid, _, pack in changed if pack == self.pack_id]
                self._refresh_groups(session, ours, reopen=False)
                for gid, _, pack in changed:
                    if pack == self.pack_id:
                        continue
                    group = session.get(UnknownGroup, gid)
                    if group is None:
                        continue
                    if actual.get(gid, 0) == 0:
                        session.delete(group)
                        continue
                    group.size = actual[gid]
                    if group.representative_face_id is None:
                        group.representative_face_id = session.scalar(
                            select(func.min(GroupMember.probe_face_id)).where(GroupMember.group_id == gid)
                        )
                self._bump(state)
            except BaseException:
                self._invalidate()
                raise
        return stats

    # -- reviewer decisions --------------------------------------------------------------------
    def _decision_group(self, session: Session, group_id: int, expected_version: int | None) -> UnknownGroup:
        group = session.get(UnknownGroup, group_id, with_for_update=True, populate_existing=True)
        if group is None:
            raise NotFound(f"unknown group {group_id} not found")
        if expected_version is not None and expected_version != group.version:
            raise GroupConflict(f"group {group_id} changed since you loaded it (version {group.version})")
        return group

    def confirm(
        self, actor: Principal, group_id: int, note: str = "", expected_version: int | None = None
    ) -> dict[str, Any]:
        """A reviewer confirms that a group's faces show one person (still not an identification)."""
        _require_reviewer(actor)
        with self.factory() as session, session.begin():
            self._lock(session)
            group = self._decision_group(session, group_id, expected_version)
            if group.size < 2:
                raise InvalidRequest(f"group {group_id} has one face: there is no link to confirm")
            faces = sorted(
                int(f)
                for f in session.scalars(select(GroupMember.probe_face_id).where(GroupMember.group_id == group_id))
            )
            group.status = "confirmed"
            group.confirmed_by = actor.username
            group.confirmed_at = _now()
            group.decided_by = actor.username
            group.version = int(group.version) + 1
            group.updated_at = _now()
            _record_decision(session, actor, group_id, "confirm", [], faces, note)
            session.flush()
            audit.append(
                session,
                actor,
                "unknown_group_confirmed",
                "unknown_group",
                group_id,
                face_ids=faces,
                version=group.version,
                note_sha256=_note_hash(note),
            )
            return {"group": group_id, "status": group.status, "version": int(group.version), "face_ids": faces}

    def split(
        self,
        actor: Principal,
        group_id: int,
        face_ids: Sequence[int],
        note: str = "",
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """A reviewer moves some of a group's faces into a new group of their own."""
        _require_reviewer(actor)
        moving = sorted({int(f) for f in face_ids})
        if not moving:
            raise InvalidRequest("name the faces to split off")
        with self.factory() as session, session.begin():
            state = self._lock(session)
            group = self._decision_group(session, group_id, expected_version)
            members = {
                int(f)
                for f in session.scalars(select(GroupMember.probe_face_id).where(GroupMember.group_id == group_id))
            }
            strangers = sorted(set(moving) - members)
            if strangers:
                raise InvalidRequest(f"faces {strangers} are not in group {group_id}")
            if set(moving) == members:
                raise InvalidRequest("a split leaves at least one face in the group")
            with self._mutex:
                try:
                    self._sync(session, state)
                    new_id = self._new_group(session, decided_by=actor.username)
                    session.execute(
                        update(GroupMember)
                        .where(GroupMember.probe_face_id.in_(moving))
                        .values(
                            group_id=new_id,
                            linked_by=actor.username,
                            reason="split",
                            linked_at=_now(),
                            score=None,
                            nearest_face_id=None,
                            nearest_score=None,
                        )
                    )
                    self.index.move(moving, new_id)
                    group.status = "open"
                    group.decided_by = actor.username
                    group.confirmed_by = None
                    group.confirmed_at = None
                    self._refresh_groups(session, [group_id, new_id], reopen=False)
                    self._bump(state)
                except BaseException:
                    self._invalidate()
                    raise
            _record_decision(session, actor, group_id, "split", [new_id], moving, note)
            audit.append(
                session,
                actor,
                "unknown_group_split",
                "unknown_group",
                group_id,
                new_group_id=new_id,
                face_ids=moving,
                note_sha256=_note_hash(note),
            )
            return {"group": group_id, "new_group": new_id, "face_ids": moving, "version": int(group.version)}

    def merge(self, actor: Principal, group_ids: Sequence[int], note: str = "") -> dict[str, Any]:
        """A reviewer merges groups into the first one named (one person seen in all of them)."""
        _require_reviewer(actor)
        ids = list(dict.fromkeys(int(g) for g in group_ids))
        if len(ids) < 2:
            raise InvalidRequest("name at least two different groups to merge")
        target, others = ids[0], ids[1:]
        with self.factory() as session, session.begin():
            state = self._lock(session)
            groups = [self._decision_group(session, gid, None) for gid in ids]
            rows = session.execute(
                select(GroupMember.group_id, GroupMember.probe_face_id, ProbeFace.probe_image_id)
                .join(ProbeFace, ProbeFace.id == GroupMember.probe_face_id)
                .where(GroupMember.group_id.in_(ids))
            ).all()
            still_groups: dict[int, set[int]] = {}
            for gid, _, image_id in rows:
                still_groups.setdefault(int(image_id), set()).add(int(gid))
            shared = sorted(image for image, gs in still_groups.items() if len(gs) > 1)
            if shared:
                raise InvalidRequest(
                    f"the groups hold different faces of the same still (image {shared[0]}): two people"
                )
            moved = sorted(int(face) for gid, face, _ in rows if int(gid) != target)
            with self._mutex:
                try:
                    self._sync(session, state)
                    session.execute(
                        update(GroupMember)
                        .where(GroupMember.group_id.in_(others))
                        .values(group_id=target, linked_by=actor.username, reason="merge", linked_at=_now())
                    )
                    self.index.move(moved, target)
                    for group in groups[1:]:
                        session.delete(group)
                    session.flush()
                    groups[0].status = "open"
                    groups[0].decided_by = actor.username
                    groups[0].confirmed_by = None
                    groups[0].confirmed_at = None
                    self._refresh_groups(session, [target], reopen=False)
                    self._bump(state)
                except BaseException:
                    self._invalidate()
                    raise
            _record_decision(session, actor, target, "merge", others, moved, note)
            audit.append(
                session,
                actor,
                "unknown_groups_merged",
                "unknown_group",
                target,
                merged_group_ids=others,
                face_ids=moved,
                note_sha256=_note_hash(note),
            )
            return {"group": target, "merged": others, "face_ids": moved, "version": int(groups[0].version)}

    # -- views ---------------------------------------------------------------------------------
    @staticmethod
    def _member_rows(session: Session, group_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """Every member of the groups with its still's provenance and its current link score."""
        out: dict[int, list[dict[str, Any]]] = {}
        if not group_ids:
            return out
        rows = session.execute(
            select(GroupMember, ProbeFace.embedding, ProbeFace.quality_score, ProbeImage, Submission)
            .join(ProbeFace, ProbeFace.id == GroupMember.probe_face_id)
            .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
            .join(Submission, Submission.id == ProbeImage.submission_id)
            .where(GroupMember.group_id.in_(list(group_ids)))
            .order_by(GroupMember.group_id, GroupMember.id)
        ).all()
        vectors: dict[int, list[NDArray[np.float32]]] = {}
        for member, embedding, quality, image, submission in rows:
            gid = int(member.group_id)
            vectors.setdefault(gid, []).append(embedding_from_bytes(embedding or b""))
            out.setdefault(gid, []).append(
                {
                    **_appearance(image, submission),
                    "face_id": int(member.probe_face_id),
                    "quality": round(float(quality), 4),
                    "linked_score": None if member.score is None else round(float(member.score), 4),
                    "nearest_face_id": member.nearest_face_id,
                    "nearest_score": None if member.nearest_score is None else round(float(member.nearest_score), 4),
                    "linked_by": member.linked_by,
                    "reason": member.reason,
                    "linked_at": _iso(member.linked_at),
                }
            )
        for gid, members in out.items():
            scores = cohesion(np.stack(vectors[gid]))
            for entry, score in zip(members, scores, strict=True):
                entry["score"] = round(float(score), 4)
        return out

    @staticmethod
    def _group_entry(group: UnknownGroup, faces: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "group": int(group.id),
            "kind": "group",
            "id": int(group.id),
            "status": group.status,
            "size": len(faces),
            "version": int(group.version),
            "representative_face_id": group.representative_face_id,
            "confirmed_by": group.confirmed_by,
            "created_at": _iso(group.created_at),
            "updated_at": _iso(group.updated_at),
            **_spread(faces),
            "faces": faces,
        }

    def list_groups(
        self,
        actor: Principal,
        *,
        status: str | None = None,
        min_faces: int = 2,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Unknown groups of at least ``min_faces`` faces, largest first (a recorded view)."""
        with self.factory() as session, session.begin():
            query = (
                select(UnknownGroup)
                .where(UnknownGroup.pack_id == self.pack_id, UnknownGroup.size >= min_faces)
                .order_by(UnknownGroup.size.desc(), UnknownGroup.id)
                .limit(limit)
                .offset(offset)
            )
            if status:
                query = query.where(UnknownGroup.status == status)
            groups = list(session.scalars(query))
            members = self._member_rows(session, [int(g.id) for g in groups])
            entries = [self._group_entry(g, members.get(int(g.id), [])) for g in groups]
            audit.append(
                session,
                actor,
                "unknowns_viewed",
                "unknown_group",
                "",
                status=status,
                min_faces=min_faces,
                group_ids=[e["group"] for e in entries],
            )
            return entries

    def group(self, actor: Principal, group_id: int) -> dict[str, Any]:
        """One group: every appearance with its link score, and every decision on it (a recorded view)."""
        with self.factory() as session, session.begin():
            group = session.get(UnknownGroup, group_id)
            if group is None:
                raise NotFound(f"unknown group {group_id} not found")
            faces = self._member_rows(session, [group_id]).get(group_id, [])
            decisions = session.scalars(
                select(GroupDecision).where(GroupDecision.group_id == group_id).order_by(GroupDecision.id)
            )
            entry = self._group_entry(group, faces)
            entry["decisions"] = [
                {
                    "id": d.id,
                    "action": d.action,
                    "other_group_ids": d.other_group_ids,
                    "face_ids": d.face_ids,
                    "note": d.note,
                    "username": d.username,
                    "role": d.role,
                    "at": _iso(d.created_at),
                }
                for d in decisions
            ]
            audit.append(session, actor, "unknown_group_viewed", "unknown_group", group_id, faces=len(faces))
            return entry

    @staticmethod
    def _known_rows(
        session: Session, subject_id: int | None = None, retailers: Sequence[str] = (), stores: Sequence[str] = ()
    ) -> list[tuple[int, str, dict[str, Any]]]:
        query = confirmed_matches(subject_id=subject_id)
        if retailers:
            query = query.where(ProbeImage.retailer.in_(list(retailers)))
        if stores:
            query = query.where(ProbeImage.store.in_(list(stores)))
        return [
            (
                int(candidate.subject_id),
                str(subject.custody_reference),
                {
                    **_appearance(image, submission),
                    "face_id": int(face.id),
                    "candidate_id": int(candidate.id),
                    "score": round(float(candidate.score), 4),
                },
            )
            for face, candidate, subject, image, submission in session.execute(query).all()
        ]

    def subject_appearances(self, actor: Principal, subject_id: int) -> dict[str, Any]:
        """A subject's history: every confirmed match, with retailer, store, incident and time (recorded)."""
        with self.factory() as session, session.begin():
            subject = session.get(Subject, subject_id)
            if subject is None:
                raise NotFound(f"subject {subject_id} not found")
            appearances = [a for _, _, a in self._known_rows(session, subject_id)]
            audit.append(session, actor, "appearances_viewed", "subject", subject_id, appearances=len(appearances))
            return {
                "kind": "subject",
                "id": subject_id,
                "subject": subject_id,
                "custody_reference": subject.custody_reference,
                **_spread(appearances),
                "appearances": appearances,
                "notice": "Confirmed matches are investigative leads, not identifications.",
            }

    def prolific(
        self,
        actor: Principal,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        retailers: Sequence[str] = (),
        stores: Sequence[str] = (),
        top: int = 10,
        kind: str = "all",
        min_incidents: int = 1,
    ) -> list[dict[str, Any]]:
        """Subjects (confirmed matches) and unknown groups ranked by distinct incidents, then retailers
        and stores, in a period (capture time, else submission time) and area (retailers, stores)."""
        if kind not in {"all", "known", "unknown"}:
            raise InvalidRequest("kind is one of all, known, unknown")
        low, high = _aware(since), _aware(until)

        def in_period(appearance: dict[str, Any]) -> bool:
            seen = datetime.fromisoformat(appearance["seen_at"])
            return (low is None or seen >= low) and (high is None or seen < high)

        entries: list[dict[str, Any]] = []
        with self.factory() as session, session.begin():
            if kind in {"all", "known"}:
                by_subject: dict[int, tuple[str, list[dict[str, Any]]]] = {}
                for sid, reference, appearance in self._known_rows(session, None, retailers, stores):
                    if in_period(appearance):
                        by_subject.setdefault(sid, (reference, []))[1].append(appearance)
                for sid, (reference, appearances) in by_subject.items():
                    entries.append(
                        {
                            "kind": "subject",
                            "id": sid,
                            "subject": sid,
                            "custody_reference": reference,
                            **_spread(appearances),
                            "appearances": appearances,
                        }
                    )
            if kind in {"all", "unknown"}:
                query = (
                    select(GroupMember.group_id, ProbeImage, Submission, GroupMember.probe_face_id)
                    .join(UnknownGroup, UnknownGroup.id == GroupMember.group_id)
                    .join(ProbeFace, ProbeFace.id == GroupMember.probe_face_id)
                    .join(ProbeImage, ProbeImage.id == ProbeFace.probe_image_id)
                    .join(Submission, Submission.id == ProbeImage.submission_id)
                    .where(UnknownGroup.size >= 2, UnknownGroup.pack_id == self.pack_id)
                )
                if retailers:
                    query = query.where(ProbeImage.retailer.in_(list(retailers)))
                if stores:
                    query = query.where(ProbeImage.store.in_(list(stores)))
                by_group: dict[int, list[dict[str, Any]]] = {}
                for gid, image, submission, face_id in session.execute(query).all():
                    appearance = {**_appearance(image, submission), "face_id": int(face_id)}
                    if in_period(appearance):
                        by_group.setdefault(int(gid), []).append(appearance)
                for gid, appearances in by_group.items():
                    entries.append(
                        {"kind": "group", "id": gid, "group": gid, **_spread(appearances), "appearances": appearances}
                    )
            entries = [e for e in entries if e["incidents"] >= min_incidents]
            entries.sort(
                key=lambda e: (
                    -e["incidents"],
                    -e["retailers"],
                    -e["stores"],
                    -len(e["appearances"]),
                    e["kind"],
                    e["id"],
                )
            )
            entries = entries[:top]
            group_ids = [e["id"] for e in entries if e["kind"] == "group"]
            members = self._member_rows(session, group_ids)
            statuses = dict(
                session.execute(
                    select(UnknownGroup.id, UnknownGroup.status).where(UnknownGroup.id.in_(group_ids))
                ).all()
            )
            for entry in entries:
                if entry["kind"] != "group":
                    continue
                scores = {m["face_id"]: m["score"] for m in members.get(entry["id"], [])}
                entry["status"] = statuses.get(entry["id"])
                entry["size"] = len(scores)
                for appearance in entry["appearances"]:
                    appearance["score"] = scores.get(appearance["face_id"])
            for rank, entry in enumerate(entries, start=1):
                entry["rank"] = rank
                entry["appearances"].sort(key=lambda a: (a["seen_at"], a["face_id"]))
            audit.append(
                session,
                actor,
                "prolific_viewed",
                "prolific",
                "",
                since=_iso(low),
                until=_iso(high),
                retailers=list(retailers),
                stores=list(stores),
                kind=kind,
                top=top,
                subject_ids=[e["id"] for e in entries if e["kind"] == "subject"],
                group_ids=group_ids,
            )
        return entries


def _appearance(image: ProbeImage, submission: Submission) -> dict[str, Any]:
    seen = _aware(image.captured_at) or _aware(submission.created_at)
    return {
        "submission": int(submission.id),
        "case_reference": submission.case_reference,
        "image_id": int(image.id),
        "file": image.file_name,
        "retailer": image.retailer,
        "store": image.store,
        "incident_reference": image.incident_reference,
        "captured_at": _iso(image.captured_at),
        "seen_at": seen.isoformat() if seen else None,
        "incident": list(incident_key(image.retailer, image.store, image.incident_reference, int(submission.id))),
    }


def _spread(appearances: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Distinct incidents, retailers and stores, first and last seen, of a list of appearances."""
    seen = sorted(a["seen_at"] for a in appearances if a.get("seen_at"))
    return {
        "incidents": len({tuple(a["incident"]) for a in appearances}),
        "retailers": len({a["retailer"].strip().lower() for a in appearances if a["retailer"].strip()}),
        "stores": len(
            {(a["retailer"].strip().lower(), a["store"].strip().lower()) for a in appearances if a["store"].strip()}
        ),
        "first_seen": seen[0] if seen else None,
        "last_seen": seen[-1] if seen else None,
    }
