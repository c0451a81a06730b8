"""`rfr audit verify` on a real database: the hash chain names the first edited, reordered or deleted row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

from sqlalchemy import select, text, update

from service.db.models import AuditEvent
from service.runtime import Runtime
from service.services import audit


def rfr_audit_verify(runtime: Runtime) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RFR_DATA_DIR": str(runtime.settings.data_dir),
        "RFR_DATABASE_URL": runtime.settings.resolved_database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "audit", "verify", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_audit_verify_names_the_edited_deleted_or_reordered_row(runtime: Runtime) -> None:
    ok = rfr_audit_verify(runtime)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    with runtime.factory() as session:
        seqs = list(session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))
    assert len(seqs) > 10
    target = seqs[len(seqs) // 2]

    def tamper(sql: str, **params: object) -> None:
        with runtime.engine.begin() as conn:
            conn.execute(text(sql), params)

    with runtime.factory() as session:
        original = session.get(AuditEvent, target)
        assert original is not None
        saved = (original.actor, original.seq, original.hash, original.prev_hash)

    # 1. edited
    tamper("UPDATE audit_events SET actor = 'mallory' WHERE seq = :s", s=target)
    broken = rfr_audit_verify(runtime)
    assert broken.returncode == 1 and json.loads(broken.stdout)["first_bad_seq"] == target
    tamper("UPDATE audit_events SET actor = :a WHERE seq = :s", a=saved[0], s=target)
    assert rfr_audit_verify(runtime).returncode == 0

    # 2. reordered: swap two neighbours' contents (sequence numbers stay dense)
    with runtime.factory() as session:
        a, b = (session.get(AuditEvent, target), session.get(AuditEvent, target + 1))
        assert a is not None and b is not None
        rows = [
            (e.at, e.actor, e.role, e.action, e.object_type, e.object_id, e.details, e.prev_hash, e.hash)
            for e in (a, b)
        ]
    columns = ["at", "actor", "role", "action", "object_type", "object_id", "details", "prev_hash", "hash"]
    with runtime.factory() as session, session.begin():
        session.execute(update(AuditEvent).where(AuditEvent.seq == target).values(hash="x" * 64))
        session.execute(
            update(AuditEvent).where(AuditEvent.seq == target + 1).values(dict(zip(columns, rows[0], strict=True)))
        )
        session.execute(
            update(AuditEvent).where(AuditEvent.seq == target).values(dict(zip(columns, rows[1], strict=True)))
        )
    broken = rfr_audit_verify(runtime)
    assert broken.returncode == 1 and json.loads(broken.stdout)["first_bad_seq"] == target
    with runtime.factory() as session, session.begin():
        session.execute(update(AuditEvent).where(AuditEvent.seq == target + 1).values(hash="y" * 64))
        session.execute(
            update(AuditEvent).where(AuditEvent.seq == target).values(dict(zip(columns, rows[0], strict=True)))
        )
        session.execute(
            update(AuditEvent).where(AuditEvent.seq == target + 1).values(dict(zip(columns, rows[1], strict=True)))
        )
    assert rfr_audit_verify(runtime).returncode == 0

    # 3. deleted (kept aside and put back, so later tests see an intact chain)
    with runtime.factory() as session:
        kept = session.get(AuditEvent, target)
        assert kept is not None
        keep = audit.event_dict(kept)
    tamper("DELETE FROM audit_events WHERE seq = :s", s=target)
    broken = rfr_audit_verify(runtime)
    assert broken.returncode == 1 and json.loads(broken.stdout)["first_bad_seq"] == target
    with runtime.factory() as session, session.begin():
        restored = AuditEvent(
            **{
                k: keep[k]
                for k in ("seq", "actor", "role", "action", "object_type", "object_id", "details", "prev_hash", "hash")
            },
            at=datetime.fromisoformat(keep["at"]),
        )
        session.add(restored)
    assert rfr_audit_verify(runtime).returncode == 0
