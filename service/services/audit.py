"""The audit trail (R1, R2): append-only, each event chained by sha256 to the one before.

``hash = sha256(prev_hash || canonical_json(event))`` where the event is its sequence number,
time, actor, role, action, object and details. ``append`` locks the chain's head row, so
appends are serialised on SQLite and PostgreSQL alike, and it runs in the caller's session: the
event commits or rolls back with the change it records. The trail never holds an image or an
embedding — only hashes, ids and the facts R1 lists.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from service.db.engine import read_session
from service.db.models import AuditEvent, AuditHead
from service.domain.roles import Principal
from service.services.views import AuditEventOut

GENESIS = "0" * 64
_HEAD_KEY = "rfr_audit_head"  # Session.info: (transaction, its locked AuditHead)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


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
    if when.tzinfo is None:  # SQLite returns naive datetimes for timezone-aware columns
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds")


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
    event = AuditEvent(
        seq=int(head.seq) + 1,
        at=datetime.now(UTC),
        actor=actor.username,
        role=as_role or str(actor.role),
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        details=json.loads(canonical_json({**details, "via": actor.via})),
        prev_hash=head.hash,
    )
    event.hash = chain_hash(event.prev_hash, event_body(event))
    head.seq = event.seq
    head.hash = event.hash
    session.add(event)
    return event


def _locked_head(session: Session) -> AuditHead:
    """The chain's head row, locked once per transaction (it stays locked until the commit)."""
    transaction = session.get_transaction()
    cached = session.info.get(_HEAD_KEY)
    if transaction is not None and cached is not None and cached[0] is transaction:
        return cast(AuditHead, cached[1])
    # populate_existing: a session reused across transactions must not trust its stale copy.
    head = session.get(AuditHead, 1, with_for_update=True, populate_existing=True)
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
        session.flush()
    session.info[_HEAD_KEY] = (session.get_transaction(), head)
    return head


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "first_bad_seq": self.first_bad_seq, "problem": self.problem}


def verify(factory: sessionmaker[Session]) -> Verification:
    """Walk the chain; name the first row that was edited, deleted or reordered."""
    expected_prev = GENESIS
    expected_seq = 1
    count = 0
    with factory() as session:
        head = session.get(AuditHead, 1)
        for event in session.scalars(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)):
            count += 1
            if event.seq != expected_seq:
                return Verification(
                    False, count, expected_seq, f"event {expected_seq} is missing (next is {event.seq})"
                )
            if event.prev_hash != expected_prev:
                return Verification(False, count, event.seq, "its prev_hash does not follow the event before it")
            if chain_hash(event.prev_hash, event_body(event)) != event.hash:
                return Verification(False, count, event.seq, "its content does not match its hash (edited)")
            expected_prev = event.hash
            expected_seq += 1
        if head is not None and (head.seq != expected_seq - 1 or head.hash != expected_prev):
            return Verification(
                False, count, expected_seq, f"the chain head says {head.seq} events; the last events were deleted"
            )
    return Verification(True, count)


def query(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
    after_seq: int = 0,
) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.seq > after_seq).order_by(AuditEvent.seq).limit(limit)
    stmt = _filtered(stmt, AuditFilter(actor, action, object_type, object_id))
    if since:
        stmt = stmt.where(AuditEvent.at >= since)
    if until:
        stmt = stmt.where(AuditEvent.at < until)
    return list(session.scalars(stmt))


def event_dict(event: AuditEvent) -> dict[str, Any]:
    return {**event_body(event), "prev_hash": event.prev_hash, "hash": event.hash}


EXPORT_COLUMNS = ["seq", "at", "actor", "role", "action", "object_type", "object_id", "details", "prev_hash", "hash"]


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


class AuditTrail:
    """The auditors' use cases: read, verify and export the trail (every export is itself recorded)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def events(
        self, filters: AuditFilter = AuditFilter(), *, after_seq: int = 0, limit: int = 500
    ) -> list[AuditEventOut]:
        """Matching events in chain order, from ``after_seq`` on."""
        with read_session(self.factory) as session:
            rows = query(
                session,
                actor=filters.actor,
                action=filters.action,
                object_type=filters.object_type,
                object_id=filters.object_id,
                after_seq=after_seq,
                limit=limit,
            )
            return [AuditEventOut.model_validate(event_dict(e)) for e in rows]

    def latest(self, filters: AuditFilter = AuditFilter(), limit: int = 500) -> list[AuditEventOut]:
        """The last ``limit`` matching events, newest first."""
        with read_session(self.factory) as session:
            stmt = _filtered(select(AuditEvent), filters).order_by(AuditEvent.seq.desc()).limit(limit)
            return [AuditEventOut.model_validate(event_dict(e)) for e in session.scalars(stmt)]

    def actions(self) -> list[str]:
        with read_session(self.factory) as session:
            return sorted(session.scalars(select(AuditEvent.action).distinct()))

    def verify(self) -> Verification:
        return verify(self.factory)

    def export(self, actor: Principal, recipient: str, fmt: str) -> Iterator[str]:
        """Record the export with its recipient, then the whole trail as JSON Lines or CSV."""
        with self.factory() as session, session.begin():
            append(session, actor, "audit_export", "audit", "", recipient=recipient, format=fmt)
        with read_session(self.factory) as session:
            events = query(session, limit=10_000_000)
        return export_lines(events, fmt)


def _filtered(stmt: Select[AuditEvent], filters: AuditFilter) -> Select[AuditEvent]:
    if filters.actor:
        stmt = stmt.where(AuditEvent.actor == filters.actor)
    if filters.action:
        stmt = stmt.where(AuditEvent.action == filters.action)
    if filters.object_type:
        stmt = stmt.where(AuditEvent.object_type == filters.object_type)
    if filters.object_id:
        stmt = stmt.where(AuditEvent.object_id == filters.object_id)
    return stmt
