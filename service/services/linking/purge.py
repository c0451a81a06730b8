"""Retention's hooks: purged faces leave their groups (FK cascade); the groups are put right."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import GroupMember, UnknownGroup
from service.services.linking.held import HeldFaces


class PurgeHooks:
    def __init__(self, held: HeldFaces) -> None:
        self.held = held

    def purge_begin(self, session: Session) -> None:
        """Retention hook at the start of the purge transaction: take the linking lock first."""
        self.held.lock(session)

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
        with self.held.changing(session, reload=True):
            ours = [gid for gid, _, pack in changed if pack == self.held.pack_id]
            self.held.refresh_groups(session, ours, reopen=False)
            for gid, _, pack in changed:
                if pack == self.held.pack_id:
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
        return stats
