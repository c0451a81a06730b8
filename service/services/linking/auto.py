"""Automatic linking: the worker's unmatched faces and reviewers' confirmed no-matches join groups;
a confirmed match leaves its group (``service.domain.linking`` decides, this module persists)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.db.models import GroupDecision, GroupMember, ProbeFace, UnknownGroup
from service.db.vectors import embedding_from_bytes
from service.domain.events import ReviewDecided
from service.domain.linking import LinkDecision, LinkRule
from service.domain.roles import Principal, Role
from service.domain.search import FaceOutcome
from service.services import audit
from service.services.linking.held import HeldFaces

LINKER = Principal(username="service:linking", role=Role.ADMIN, via="service")


class AutoLinker:
    def __init__(self, held: HeldFaces, rule: LinkRule, *, enabled: bool) -> None:
        self.held = held
        self.rule = rule
        self.enabled = enabled

    def link_new_faces(self, session: Session, image_id: int, faces: Sequence[tuple[int, FaceOutcome]]) -> None:
        """Worker hook, inside the transaction that stores an image's faces: link its unmatched faces."""
        if not self.enabled:
            return
        eligible = [
            (face_id, outcome.record.embedding)
            for face_id, outcome in faces
            if outcome.searched
            and outcome.record.quality.usable  # as benchmarks/linking.py measured it
            and outcome.record.pack_id == self.held.pack_id
            and not any(c.above_threshold for c in outcome.candidates)
        ]
        if eligible:
            self._link(session, eligible, reason="unmatched", same_still=True, object_id=image_id)

    def review_decided(self, session: Session, event: ReviewDecided) -> None:
        """Review subscriber: a confirmed no-match becomes an unknown; a confirmed match leaves its group."""
        if event.confirmed_match:
            self._identified(session, event)
            return
        if not event.confirmed_no_match or not self.enabled:
            return
        face = session.get(ProbeFace, event.face_id)
        if face is None or face.embedding is None or not face.usable or face.pack_id != self.held.pack_id:
            return
        if session.scalar(select(GroupMember.id).where(GroupMember.probe_face_id == event.face_id)) is not None:
            return
        self._link(
            session,
            [(event.face_id, embedding_from_bytes(face.embedding))],
            reason="no_match",
            same_still=False,
            object_id=event.face_id,
            decided_by=event.actor,
        )

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
        index = self.held.index
        with self.held.changing(session) as change:
            ids = [face_id for face_id, _ in faces if face_id not in index]
            if not ids:
                change.bump = False
                return []
            vectors = np.stack([vector for face_id, vector in faces if face_id in ids])
            decisions = index.link(
                ids,
                vectors,
                self.rule,
                lambda: self.held.new_group(session),
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
                self.held.joined(decision.face_id, int(member.id))
            reopened = self.held.refresh_groups(session, {d.group_id for d in decisions}, reopen=True)
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

    @staticmethod
    def _may_merge(session: Session, gid: int) -> bool:
        group = session.get(UnknownGroup, gid)
        return group is not None and group.decided_by is None and group.status == "open"

    @staticmethod
    def _persist_auto_merge(session: Session, decision: LinkDecision) -> None:
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

    def _identified(self, session: Session, event: ReviewDecided) -> None:
        face_id, actor = event.face_id, event.actor
        member = session.scalar(select(GroupMember).where(GroupMember.probe_face_id == face_id))
        if member is None:
            return
        with self.held.changing(session):
            gid = int(member.group_id)
            session.delete(member)
            session.flush()
            self.held.left(face_id)
            self.held.refresh_groups(session, [gid], reopen=False)
        session.add(
            GroupDecision(
                group_id=gid,
                action="identified",
                other_group_ids=[],
                face_ids=[face_id],
                note=f"confirmed match to subject {event.subject_id}",
                username=actor.username,
                role=str(actor.role),
            )
        )
        audit.append(
            session,
            actor,
            "unknown_face_identified",
            "probe_face",
            face_id,
            group_id=gid,
            subject_id=event.subject_id,
        )
