"""Reviewers' decisions on unknown groups: confirm, split, merge (``group_decisions`` + the audit
trail). Automatic linking never merges a group a reviewer has decided on."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import GroupDecision, GroupMember, ProbeFace, UnknownGroup
from service.domain.roles import Permission, Principal
from service.errors import Conflict, Forbidden, InvalidRequest, NotFound
from service.services import audit
from service.services.linking.clock import now
from service.services.linking.held import HeldFaces
from service.services.linking.models import GroupDecisionDone


class GroupConflict(Conflict):
    code = "group_conflict"


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


def _require_reviewer(actor: Principal) -> None:
    if not (actor.can(Permission.REVIEW) or actor.can(Permission.CONFIRM)):
        raise Forbidden(f"role {actor.role} may not decide on unknown groups")


def _decided_open(group: UnknownGroup, actor: Principal) -> None:
    """A split or merge leaves the group open, decided by ``actor`` (any confirmation is void)."""
    group.status = "open"
    group.decided_by = actor.username
    group.confirmed_by = None
    group.confirmed_at = None


class GroupDecisions:
    def __init__(self, factory: sessionmaker[Session], held: HeldFaces) -> None:
        self.factory = factory
        self.held = held

    @staticmethod
    def _decision_group(session: Session, group_id: int, expected_version: int | None) -> UnknownGroup:
        group = session.get(UnknownGroup, group_id, with_for_update=True, populate_existing=True)
        if group is None:
            raise NotFound(f"unknown group {group_id} not found")
        if expected_version is not None and expected_version != group.version:
            raise GroupConflict(f"group {group_id} changed since you loaded it (version {group.version})")
        return group

    def confirm(
        self, actor: Principal, group_id: int, note: str = "", expected_version: int | None = None
    ) -> GroupDecisionDone:
        """A reviewer confirms that a group's faces show one person (still not an identification)."""
        _require_reviewer(actor)
        with self.factory() as session, session.begin():
            self.held.lock(session)
            group = self._decision_group(session, group_id, expected_version)
            if group.size < 2:
                raise InvalidRequest(f"group {group_id} has one face: there is no link to confirm")
            faces = sorted(
                int(f)
                for f in session.scalars(select(GroupMember.probe_face_id).where(GroupMember.group_id == group_id))
            )
            group.status = "confirmed"
            group.confirmed_by = actor.username
            group.confirmed_at = now()
            group.decided_by = actor.username
            group.version = int(group.version) + 1
            group.updated_at = now()
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
                note_sha256=audit.note_digest(note),
            )
            return {"group": group_id, "status": group.status, "version": int(group.version), "face_ids": faces}

    def split(
        self,
        actor: Principal,
        group_id: int,
        face_ids: Sequence[int],
        note: str = "",
        expected_version: int | None = None,
    ) -> GroupDecisionDone:
        """A reviewer moves some of a group's faces into a new group of their own."""
        _require_reviewer(actor)
        moving = sorted({int(f) for f in face_ids})
        if not moving:
            raise InvalidRequest("name the faces to split off")
        with self.factory() as session, session.begin():
            state = self.held.lock(session)
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
            with self.held.changing(session, state):
                new_id = self.held.new_group(session, decided_by=actor.username)
                session.execute(
                    update(GroupMember)
                    .where(GroupMember.probe_face_id.in_(moving))
                    .values(
                        group_id=new_id,
                        linked_by=actor.username,
                        reason="split",
                        linked_at=now(),
                        score=None,
                        nearest_face_id=None,
                        nearest_score=None,
                    )
                )
                self.held.index.move(moving, new_id)
                _decided_open(group, actor)
                self.held.refresh_groups(session, [group_id, new_id], reopen=False)
            _record_decision(session, actor, group_id, "split", [new_id], moving, note)
            audit.append(
                session,
                actor,
                "unknown_group_split",
                "unknown_group",
                group_id,
                new_group_id=new_id,
                face_ids=moving,
                note_sha256=audit.note_digest(note),
            )
            return {"group": group_id, "new_group": new_id, "face_ids": moving, "version": int(group.version)}

    def merge(self, actor: Principal, group_ids: Sequence[int], note: str = "") -> GroupDecisionDone:
        """A reviewer merges groups into the first one named (one person seen in all of them)."""
        _require_reviewer(actor)
        ids = list(dict.fromkeys(int(g) for g in group_ids))
        if len(ids) < 2:
            raise InvalidRequest("name at least two different groups to merge")
        target, others = ids[0], ids[1:]
        with self.factory() as session, session.begin():
            state = self.held.lock(session)
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
            with self.held.changing(session, state):
                session.execute(
                    update(GroupMember)
                    .where(GroupMember.group_id.in_(others))
                    .values(group_id=target, linked_by=actor.username, reason="merge", linked_at=now())
                )
                self.held.index.move(moved, target)
                for group in groups[1:]:
                    session.delete(group)
                session.flush()
                _decided_open(groups[0], actor)
                self.held.refresh_groups(session, [target], reopen=False)
            _record_decision(session, actor, target, "merge", others, moved, note)
            audit.append(
                session,
                actor,
                "unknown_groups_merged",
                "unknown_group",
                target,
                merged_group_ids=others,
                face_ids=moved,
                note_sha256=audit.note_digest(note),
            )
            return {"group": target, "merged": others, "face_ids": moved, "version": int(groups[0].version)}
