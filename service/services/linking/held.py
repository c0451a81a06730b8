"""The unknown faces a process holds in memory, kept in step with the database under the linking lock.

Every change to the groups goes through ``HeldFaces.changing``: take the lock (the pack's
``linking_state`` row), bring the index to the database's groups, make the change, and replace the
stamp; if anything fails the index is marked stale, so the next use reconciles.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import GroupMember, LinkingState, ProbeFace, UnknownGroup
from service.db.vectors import embedding_from_bytes
from service.domain.linking import UnknownFaceIndex
from service.services.linking.clock import now

log = logging.getLogger(__name__)

LOAD_CHUNK = 5000


@dataclass(slots=True)
class Change:
    """The block inside ``HeldFaces.changing``; ``bump = False`` when it turned out to change nothing."""

    state: LinkingState
    bump: bool = True


class HeldFaces:
    """A pack's unknown faces in an ``UnknownFaceIndex``, the stamp it reflects, and the linking lock."""

    def __init__(self, pack_id: str, dim: int) -> None:
        self.pack_id = pack_id
        self.index = UnknownFaceIndex(dim)
        self._version: int | None = None  # the linking_state stamp the index reflects; None: reload
        self._member_ids: dict[int, int] = {}  # face id -> its group_members row id, for the faces held
        self._mutex = threading.RLock()

    # -- the lock and the stamp ----------------------------------------------------------------
    def lock(self, session: Session) -> LinkingState:
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

    @contextmanager
    def changing(
        self,
        session: Session,
        locked: LinkingState | None = None,
        *,
        bump: bool = True,
        reload: bool = False,
    ) -> Iterator[Change]:
        """Lock (unless ``locked`` is the lock already taken) → sync → the block → bump the stamp.

        Any error in the block marks the index stale (a rolled-back change must not stay in memory).
        ``reload`` re-reads every membership first (after deletes the index did not see)."""
        state = locked if locked is not None else self.lock(session)
        with self._mutex:
            try:
                if reload:
                    self._version = None
                self._sync(session, state)
                change = Change(state, bump)
                yield change
                if change.bump:
                    state.version = secrets.randbits(62)
                    self._version = int(state.version)
            except BaseException:
                self._version = None
                raise

    def synced(self, session: Session) -> AbstractContextManager[Change]:
        """``changing`` for a read: lock → sync, no new stamp."""
        return self.changing(session, bump=False)

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

    # -- memberships and groups (inside ``changing``) -------------------------------------------
    def joined(self, face_id: int, member_id: int) -> None:
        """A face held in the index got its ``group_members`` row."""
        self._member_ids[face_id] = member_id

    def left(self, face_id: int) -> None:
        """A face left its group: it is no longer held."""
        self.index.remove([face_id])
        self._member_ids.pop(face_id, None)

    def refresh_groups(self, session: Session, group_ids: Iterable[int], *, reopen: bool) -> list[int]:
        """Size, representative and version of changed groups; empty groups go. Returns reopened groups."""
        reopened = []
        when = now()
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
            group.updated_at = when
            if reopen and group.status == "confirmed":
                group.status = "open"
                reopened.append(gid)
        session.flush()
        return reopened

    def new_group(self, session: Session, decided_by: str | None = None) -> int:
        group = UnknownGroup(pack_id=self.pack_id, status="open", size=0, version=0, decided_by=decided_by)
        session.add(group)
        session.flush()
        return int(group.id)
