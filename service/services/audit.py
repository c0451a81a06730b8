"""The audit trail (R1, R2): append-only, each event chained by sha256 to the one before.

``hash = sha256(prev_hash || canonical_json(event))`` where the event is its sequence number,
time, actor, role, action, object and details. ``append`` locks the chain's head row, so
appends are serialised on SQLite and PostgreSQL alike, and it runs in the caller's session: the
event commits or rolls back with the change it records. The trail never holds an image or an
embedding — only hashes, ids and the facts R1 lists.

The chain is anchored outside the database (``service.services.audit_anchor``): sessions of a
factory given to ``open_anchor`` MAC each event with a key the database does not hold and, after
each commit that appended events, write a checkpoint. ``verify`` then sees an edit, deletion,
reordering, insertion, a cut tail, an emptied trail and a chain recomputed without the key. A
missing or rewound head row is rebuilt from the last event by the next append (and recorded as
``audit_head_restored``), so it never stops the service.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Select, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from service.db.engine import read_session
from service.db.models import AuditEvent, AuditHead
from service.domain.roles import Principal, Role
from service.domain.times import as_utc
from service.errors import ConfigurationError
from service.services.audit_anchor import (
    GENESIS,
    AuditAnchor,
    CheckpointLog,
    Problem,
    canonical_json,
    create_key,
    read_key,
)
from service.services.views import AuditEventOut

__all__ = ["GENESIS", "AuditTrail", "Problem", "Verification", "append", "canonical_json", "open_anchor", "verify"]

_HEAD_KEY = "rfr_audit_head"  # Session.info: (transaction, its locked AuditHead)
_ANCHOR_KEY = "rfr_audit_anchor"  # Session.info (from its sessionmaker): the AuditAnchor
_PENDING_KEY = "rfr_audit_checkpoint"  # Session.info: (root transaction, where appended, seq, hash)
RESTORER = Principal(username="service:audit", role=Role.ADMIN, via="service")


def event_body(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": int(event.seq),
        "at": _iso(event.at),
        "actor": event.actor,
        "role": event.role,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "details": event.details,
    }


def _iso(when: datetime) -> str:
    return as_utc(when).isoformat(timespec="microseconds")


def note_digest(note: str) -> str | None:
    """What the trail keeps of a reviewer's free-text note: its sha256 (none for no note), never the text."""
    return hashlib.sha256(note.encode()).hexdigest() if note else None


def chain_hash(prev_hash: str, body: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(body)).encode()).hexdigest()


def append(
    session: Session,
    actor: Principal,
    action: str,
    object_type: str = "",
    object_id: object = "",
    *,
    as_role: Any = None,  # str | None (Any, so callers may still pass **details)
    **details: Any,
) -> AuditEvent:
    """Add one event to the chain inside the caller's transaction (written at its next flush);
    ``as_role`` records a role other than the actor's (``none`` for someone not signed in)."""
    head = _locked_head(session)
    return _add_event(session, head, actor, action, object_type, object_id, as_role or str(actor.role), details)


def _add_event(
    session: Session,
    head: AuditHead,
    actor: Principal,
    action: str,
    object_type: str,
    object_id: object,
    role: str,
    details: dict[str, Any],
) -> AuditEvent:
    event = AuditEvent(
        seq=int(head.seq) + 1,
        at=datetime.now(UTC),
        actor=actor.username,
        role=role,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        details=json.loads(canonical_json({**details, "via": actor.via})),
        prev_hash=head.hash,
    )
    event.hash = chain_hash(event.prev_hash, event_body(event))
    anchor: AuditAnchor | None = session.info.get(_ANCHOR_KEY)
    if anchor is not None:
        event.mac = anchor.key.event_mac(event.seq, event.hash)
        where = session.get_nested_transaction() or session.get_transaction()
        session.info[_PENDING_KEY] = (session.get_transaction(), where, event.seq, event.hash)
    head.seq = event.seq
    head.hash = event.hash
    session.add(event)
    return event


def _locked_head(session: Session) -> AuditHead:
    """The chain's head row, locked once per transaction (it stays locked until the commit).

    A missing head row (deleted) or one behind the last event (rewound) is rebuilt from the last
    event, and the repair recorded, instead of failing every later write on a duplicate seq."""
    transaction = session.get_transaction()
    cached = session.info.get(_HEAD_KEY)
    if transaction is not None and cached is not None and cached[0] is transaction:
        return cast(AuditHead, cached[1])
    # populate_existing: a session reused across transactions must not trust its stale copy.
    head = session.get(AuditHead, 1, with_for_update=True, populate_existing=True)
    missing = head is None
    if head is None:
        try:
            with session.begin_nested():
                session.add(AuditHead(id=1, seq=0, hash=GENESIS))
        except IntegrityError:
            pass  # another transaction made it first
        head = session.get(AuditHead, 1, with_for_update=True, populate_existing=True)
        assert head is not None
    session.info[_HEAD_KEY] = (session.get_transaction(), head)
    last = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    if last is not None and (last.seq > head.seq or (last.seq == head.seq and last.hash != head.hash)):
        found = {"found": "missing"} if missing else {"found": "behind", "head_seq": int(head.seq)}
        head.seq, head.hash = int(last.seq), last.hash
        _add_event(session, head, RESTORER, "audit_head_restored", "audit", "", str(RESTORER.role), found)
    return head


def open_anchor(factory: sessionmaker[Session], key_file: Path, checkpoint_file: Path) -> AuditAnchor:
    """Anchor every session of ``factory``: its appends are MAC'd and checkpointed after commit.

    The key is made on first use (and the checkpoint file's anchor line: MACs are required from the
    next event on). A missing key is refused once the trail was anchored with one: a new key would
    make every MAC fail."""
    key = read_key(key_file)
    signed = None
    if key is None or not checkpoint_file.exists():
        with read_session(factory) as session:
            signed = session.scalar(select(AuditEvent.seq).where(AuditEvent.mac.is_not(None)).limit(1))
    if key is None:
        if signed is not None or checkpoint_file.exists():
            raise ConfigurationError(
                f"the audit key file {key_file} is missing, but the audit trail was anchored with a key: "
                "restore it (RFR_AUDIT__KEY_FILE names where it is)"
            )
        key, _ = create_key(key_file)
    anchor = AuditAnchor(checkpoint_file, key)
    if not anchor.exists() and signed is None:  # first use (or a crash right after the key was made)
        with read_session(factory) as session:
            last = session.execute(
                select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
            ).first()
        anchor.write_anchor(int(last.seq) + 1 if last else 1, last.hash if last else GENESIS)
    factory.configure(info={**factory.kw.get("info", {}), _ANCHOR_KEY: anchor})
    event.listen(factory, "after_commit", _checkpoint_after_commit)
    event.listen(factory, "after_soft_rollback", _forget_after_rollback)
    return anchor


def anchor_of(factory: sessionmaker[Session]) -> AuditAnchor | None:
    return cast("AuditAnchor | None", factory.kw.get("info", {}).get(_ANCHOR_KEY))


def _checkpoint_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: nothing is committed yet
    pending = session.info.pop(_PENDING_KEY, None)
    anchor: AuditAnchor | None = session.info.get(_ANCHOR_KEY)
    if pending is not None and anchor is not None and pending[0] is session.get_transaction():
        anchor.write(pending[2], pending[3])


def _forget_after_rollback(session: Session, previous: SessionTransaction) -> None:
    """A rollback of the transaction (or savepoint) the last append was in: no checkpoint for it."""
    pending = session.info.get(_PENDING_KEY)
    if pending is None:
        return
    where: SessionTransaction | None = pending[1]
    while where is not None and where is not previous:
        where = where.parent
    if where is previous:
        session.info.pop(_PENDING_KEY, None)


@dataclass(frozen=True, slots=True)
class Verification:
    """``ok``, or the first problem found: its ``kind`` (a ``Problem``), the first bad event and a sentence.

    ``anchored_from``: the first event that must carry a MAC (None: no anchor); ``unanchored``:
    events from before the key existed (protected only by the chain into the anchored part);
    ``checkpoint_seq``: the last event the checkpoint file vouches for."""

    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None
    kind: Problem | None = None
    anchored_from: int | None = None
    unanchored: int = 0
    checkpoint_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "kind": str(self.kind) if self.kind is not None else None,
            "anchored_from": self.anchored_from,
            "unanchored": self.unanchored,
            "checkpoint_seq": self.checkpoint_seq,
        }


def verify(
    factory: sessionmaker[Session], anchor: AuditAnchor | None = None, also: Sequence[Path] = ()
) -> Verification:
    """Walk the chain (and, when anchored, every MAC and checkpoint); name the first problem.

    ``also``: other hosts' checkpoint files, checked with this one (``AuditAnchor.read``)."""
    anchor = anchor or anchor_of(factory)
    log = anchor.read(also) if anchor is not None else None  # before the trail: checkpoints trail the commits
    walk = _Walk(anchor, log)
    with read_session(factory) as session:
        for row in session.scalars(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)):
            broken = walk.step(row)
            if broken is not None:
                return broken
        if log is not None and log.problem is not None:
            kind, seq, message = log.problem
            return walk.result(kind, seq, message)
        if log is not None and walk.checkpoint < len(log.seqs):
            return walk.result(
                Problem.TRUNCATED,
                walk.expected_seq,
                f"a checkpoint records event {log.last_seq} but the trail ends at {walk.expected_seq - 1}: "
                "the last events were deleted",
            )
        head = session.get(AuditHead, 1)  # after the walk: it can only be newer than what was walked
        if head is None and walk.count:
            return walk.result(Problem.HEAD_MISSING, None, "the chain's head row (audit_head) is missing")
        if head is not None and (head.seq != walk.expected_seq - 1 or head.hash != walk.expected_prev):
            newer = session.get(AuditEvent, head.seq) if head.seq > walk.expected_seq - 1 else None
            if newer is None or newer.hash != head.hash:
                return walk.result(
                    Problem.HEAD_MISMATCH,
                    walk.expected_seq,
                    f"the chain head says {head.seq} events; the trail ends at {walk.expected_seq - 1}",
                )
    return walk.result(None, None, None)


class _Walk:
    """The state of one verification pass over the trail in seq order."""

    def __init__(self, anchor: AuditAnchor | None, log: CheckpointLog | None) -> None:
        self.anchor = anchor
        self.log = log
        self.anchored_from = log.anchored_from if log is not None else None
        self.expected_prev = GENESIS
        self.expected_seq = 1
        self.count = 0
        self.unanchored = 0
        self.checkpoint = 0  # index of the next checkpoint not yet met
        while log is not None and self.checkpoint < len(log.seqs) and log.seqs[self.checkpoint] <= 0:
            self.checkpoint += 1  # the anchor of an empty trail

    def result(self, kind: Problem | None, seq: int | None, problem: str | None) -> Verification:
        return Verification(
            kind is None,
            self.count,
            seq,
            problem,
            kind=kind,
            anchored_from=self.anchored_from,
            unanchored=self.unanchored,
            checkpoint_seq=self.log.last_seq if self.log is not None else None,
        )

    def step(self, event: AuditEvent) -> Verification | None:
        self.count += 1
        seq = int(event.seq)
        if seq != self.expected_seq:
            return self.result(
                Problem.MISSING_EVENT, self.expected_seq, f"event {self.expected_seq} is missing (next is {seq})"
            )
        if event.prev_hash != self.expected_prev:
            return self.result(Problem.OUT_OF_ORDER, seq, "its prev_hash does not follow the event before it")
        if chain_hash(event.prev_hash, event_body(event)) != event.hash:
            return self.result(Problem.EDITED, seq, "its content does not match its hash (edited)")
        if self.anchor is not None:
            if event.mac is None:
                if self.anchored_from is not None and seq >= self.anchored_from:
                    return self.result(Problem.MAC_MISSING, seq, "it has no MAC: it was written without the key")
                self.unanchored += 1
            elif not hmac.compare_digest(event.mac, self.anchor.key.event_mac(seq, event.hash)):
                return self.result(
                    Problem.MAC_MISMATCH, seq, "its MAC does not match: the chain was recomputed or the row forged"
                )
        log = self.log
        while log is not None and self.checkpoint < len(log.seqs) and log.seqs[self.checkpoint] <= seq:
            if log.seqs[self.checkpoint] < seq or log.digest(self.checkpoint) != event.hash:
                return self.result(
                    Problem.REPLACED,
                    seq,
                    "a checkpoint recorded this event with another hash: the trail was cut and written again",
                )
            self.checkpoint += 1
        self.expected_prev = event.hash
        self.expected_seq += 1
        return None


def query(
    session: Session, filters: AuditFilter | None = None, *, limit: int = 500, after_seq: int = 0
) -> list[AuditEvent]:
    """Matching events in chain order, from ``after_seq`` on."""
    stmt = select(AuditEvent).where(AuditEvent.seq > after_seq).order_by(AuditEvent.seq).limit(limit)
    return list(session.scalars(_filtered(stmt, filters or AuditFilter())))


def event_dict(event: AuditEvent) -> dict[str, Any]:
    return {**event_body(event), "prev_hash": event.prev_hash, "hash": event.hash, "mac": event.mac}


EXPORT_COLUMNS = [
    "seq",
    "at",
    "actor",
    "role",
    "action",
    "object_type",
    "object_id",
    "details",
    "prev_hash",
    "hash",
    "mac",
]


def export_lines(events: list[AuditEvent], fmt: str) -> Iterator[str]:
    """JSON Lines or CSV (details as canonical JSON), for an auditor or the regulator."""
    if fmt == "jsonl":
        for event in events:
            yield canonical_json(event_dict(event)) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for event in events:
        row = event_dict(event)
        writer.writerow([canonical_json(row[c]) if c == "details" else row[c] for c in EXPORT_COLUMNS])
    yield buffer.getvalue()


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None  # events at or after
    until: datetime | None = None  # events before


class AuditTrail:
    """The auditors' use cases: read, verify and export the trail (every export is itself recorded)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def events(
        self, filters: AuditFilter = AuditFilter(), *, after_seq: int = 0, limit: int = 500
    ) -> list[AuditEventOut]:
        """Matching events in chain order, from ``after_seq`` on."""
        with read_session(self.factory) as session:
            rows = query(session, filters, after_seq=after_seq, limit=limit)
            return [AuditEventOut.model_validate(event_dict(e)) for e in rows]

    def latest(
        self, filters: AuditFilter = AuditFilter(), limit: int = 500, before_seq: int | None = None
    ) -> AuditPage:
        """A page of matching events, newest first: the last ``limit`` (before ``before_seq``), with how
        many match in all and where the next, older, page starts."""
        with read_session(self.factory) as session:
            stmt = _filtered(select(AuditEvent), filters)
            if before_seq is not None:
                stmt = stmt.where(AuditEvent.seq < before_seq)
            rows = list(session.scalars(stmt.order_by(AuditEvent.seq.desc()).limit(limit + 1)))
            total = int(session.scalar(_filtered(select(func.count()).select_from(AuditEvent), filters)) or 0)
            events = [AuditEventOut.model_validate(event_dict(e)) for e in rows[:limit]]
            older = events[-1].seq if len(rows) > limit else None
            return AuditPage(events=events, total=total, older_than=older)

    def actions(self) -> list[str]:
        with read_session(self.factory) as session:
            return sorted(session.scalars(select(AuditEvent.action).distinct()))

    def verify(self, also: Sequence[Path] = ()) -> Verification:
        """The trail checked; ``also``: the checkpoint files of other hosts (``rfr worker`` hosts)."""
        return verify(self.factory, also=also)

    def export(self, actor: Principal, recipient: str, fmt: str) -> Iterator[str]:
        """Record the export with its recipient, then the whole trail as JSON Lines or CSV."""
        with self.factory() as session, session.begin():
            append(session, actor, "audit_export", "audit", "", recipient=recipient, format=fmt)
        with read_session(self.factory) as session:
            events = query(session, limit=10_000_000)
        return export_lines(events, fmt)


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[AuditEventOut]
    total: int  # matching events in all
    older_than: int | None  # the seq the next, older, page starts before (none: this is the last)


_S = TypeVar("_S", bound=Select[Any])


def _filtered(stmt: _S, filters: AuditFilter) -> _S:
    if filters.actor:
        stmt = stmt.where(AuditEvent.actor == filters.actor)
    if filters.action:
        stmt = stmt.where(AuditEvent.action == filters.action)
    if filters.object_type:
        stmt = stmt.where(AuditEvent.object_type == filters.object_type)
    if filters.object_id:
        stmt = stmt.where(AuditEvent.object_id == filters.object_id)
    if filters.since:
        stmt = stmt.where(AuditEvent.at >= filters.since)
    if filters.until:
        stmt = stmt.where(AuditEvent.at < filters.until)
    return stmt
