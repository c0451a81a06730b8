"""`rfr audit verify` on a real database: the hash chain names the first edited, reordered or deleted row,
and the anchor outside the database (the audit key and the checkpoint file) names a recomputed chain, a cut
tail with or without the head row, an emptied trail and a trail cut and written again."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from service.config import AuditSettings
from service.db.engine import make_engine, migrate, session_factory
from service.db.models import AuditEvent, AuditHead
from service.errors import ConfigurationError
from service.runtime import Runtime, Storage
from service.services import audit
from tests.fixtures import OPERATOR, database_params, make_settings, reset_postgres


def rfr_audit_verify(runtime: Storage, *options: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RFR_DATA_DIR": str(runtime.settings.data_dir),
        "RFR_DATABASE_URL": runtime.settings.resolved_database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "audit", "verify", "--json", *options],
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
                for k in (
                    "seq",
                    "actor",
                    "role",
                    "action",
                    "object_type",
                    "object_id",
                    "details",
                    "prev_hash",
                    "hash",
                    "mac",
                )
            },
            at=datetime.fromisoformat(keep["at"]),
        )
        session.add(restored)
    assert rfr_audit_verify(runtime).returncode == 0


# -- the anchor: each test on a trail of its own -------------------------------------------------------


@pytest.fixture(params=database_params())
def trail(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A storage tier on a fresh database whose trail holds 12 events, written in 4 commits of 3."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'rfr.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        reset_postgres(url)
    storage = Storage.open(make_settings(tmp_path / "data", url, tmp_path / "cache"))
    record(storage, 12)
    yield storage
    storage.close()


def record(storage: Storage, events: int, per_commit: int = 3) -> None:
    """``events`` audit events written through the service's own append, ``per_commit`` to a transaction."""
    for start in range(0, events, per_commit):
        with storage.factory() as session, session.begin():
            for n in range(start, min(events, start + per_commit)):
                audit.append(session, OPERATOR, "test_event", "thing", n, n=n)


def verdict(storage: Storage, *options: str) -> dict[str, object]:
    """``rfr audit verify --json [OPTIONS]`` in a process of its own: its JSON, checked against its exit code."""
    done = rfr_audit_verify(storage, *options)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    assert (done.returncode == 0) is result["ok"], result
    return result


def sql(storage: Storage, statement: str, **params: object) -> None:
    """Someone with database access (and nothing else) changes it."""
    with storage.engine.begin() as conn:
        conn.execute(text(statement), params)


def events_of(storage: Storage) -> list[AuditEvent]:
    with storage.factory() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def rewrite_from(storage: Storage, first: int, actor: str = "mallory") -> None:
    """Edit event ``first`` and recompute the sha256 chain from there on, head included: what a
    database administrator can do without the key."""
    with storage.factory() as session, session.begin():
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.seq >= first).order_by(AuditEvent.seq)))
        prev = rows[0].prev_hash
        rows[0].actor = actor
        for row in rows:
            row.prev_hash = prev
            row.hash = audit.chain_hash(prev, audit.event_body(row))
            prev = row.hash
            session.flush()
        head = session.get(AuditHead, 1)
        assert head is not None
        head.seq, head.hash = rows[-1].seq, prev


def test_an_intact_anchored_trail_verifies(trail: Storage) -> None:
    result = verdict(trail)
    assert result == {
        "ok": True,
        "events": 12,
        "first_bad_seq": None,
        "problem": None,
        "kind": None,
        "anchored_from": 1,
        "unanchored": 0,
        "checkpoint_seq": 12,
    }
    assert all(
        e.mac == trail.factory.kw["info"]["rfr_audit_anchor"].key.event_mac(e.seq, e.hash) for e in events_of(trail)
    )


def test_an_edited_event_is_named(trail: Storage) -> None:
    sql(trail, "UPDATE audit_events SET object_id = 'other' WHERE seq = 5")
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"]) == ("edited", 5)


def test_a_deleted_event_is_named(trail: Storage) -> None:
    sql(trail, "DELETE FROM audit_events WHERE seq = 7")
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"]) == ("missing_event", 7)


def test_reordered_events_are_named(trail: Storage) -> None:
    sql(trail, "UPDATE audit_events SET seq = 100 WHERE seq = 4")
    sql(trail, "UPDATE audit_events SET seq = 4 WHERE seq = 5")
    sql(trail, "UPDATE audit_events SET seq = 5 WHERE seq = 100")
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"]) == ("out_of_order", 4)


def test_an_inserted_event_is_named(trail: Storage) -> None:
    """A forged event slipped in after event 6, chained correctly by sha256, the later ones renumbered."""
    sql(trail, "UPDATE audit_events SET seq = seq + 1000 WHERE seq > 6")
    sql(trail, "UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000")
    sixth = events_of(trail)[5]
    forged = AuditEvent(
        seq=7, at=sixth.at, actor="mallory", role="admin", action="login", object_type="user", object_id="1",
        details={"via": "api"}, prev_hash=sixth.hash,
    )  # fmt: skip
    forged.hash = audit.chain_hash(forged.prev_hash, audit.event_body(forged))
    with trail.factory() as session, session.begin():
        session.add(forged)
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"]) == ("mac_missing", 7)


def test_an_event_forged_at_the_end_is_named(trail: Storage) -> None:
    last = events_of(trail)[-1]
    forged = AuditEvent(
        seq=13, at=last.at, actor="mallory", role="admin", action="login", object_type="user", object_id="1",
        details={"via": "api"}, prev_hash=last.hash, mac="0" * 64,
    )  # fmt: skip
    forged.hash = audit.chain_hash(forged.prev_hash, audit.event_body(forged))
    with trail.factory() as session, session.begin():
        session.add(forged)
        session.execute(update(AuditHead).values(seq=13, hash=forged.hash))
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"]) == ("mac_mismatch", 13)


def test_a_chain_recomputed_without_the_key_is_named(trail: Storage) -> None:
    rewrite_from(trail, 4)
    plain = session_factory(trail.engine)  # the sha256 chain alone, without the anchor: it looks intact
    assert audit.verify(plain).ok
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"]) == ("mac_mismatch", 4)
    sql(trail, "UPDATE audit_events SET mac = NULL")  # nor may the MACs simply be dropped
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"]) == ("mac_missing", 1)


def test_a_cut_tail_with_the_head_row_rewound_is_named(trail: Storage) -> None:
    ninth = events_of(trail)[8]
    sql(trail, "DELETE FROM audit_events WHERE seq > 9")
    sql(trail, "UPDATE audit_head SET seq = 9, hash = :h", h=ninth.hash)
    plain = session_factory(trail.engine)
    assert audit.verify(plain).ok  # the chain and its head agree: only the checkpoints know better
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"], result["events"]) == ("truncated", 10, 9)


def test_a_cut_tail_without_the_head_row_is_named(trail: Storage) -> None:
    sql(trail, "DELETE FROM audit_events WHERE seq > 8")
    sql(trail, "DELETE FROM audit_head")
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"], result["events"]) == ("truncated", 9, 8)


def test_an_emptied_trail_is_named(trail: Storage) -> None:
    sql(trail, "DELETE FROM audit_events")
    sql(trail, "DELETE FROM audit_head")
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"], result["events"]) == ("truncated", 1, 0)


def test_a_trail_emptied_and_written_again_is_named(trail: Storage) -> None:
    """Emptied, then the service writes on (from event 1 again): the checkpoints of the old events remain."""
    sql(trail, "DELETE FROM audit_events")
    sql(trail, "DELETE FROM audit_head")
    record(trail, 15)
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"]) == ("replaced", 3)


def test_the_service_writes_on_after_the_head_row_is_deleted_or_rewound(trail: Storage) -> None:
    sql(trail, "DELETE FROM audit_head")
    result = verdict(trail)
    assert (result["kind"], result["ok"]) == ("head_missing", False)
    lines = list(trail.audit.export(OPERATOR, "the auditor", "jsonl"))  # an audited use case of the service
    assert len(lines) == 14
    restored, exported = (json.loads(line) for line in lines[-2:])
    assert (restored["seq"], restored["action"], restored["details"]["found"]) == (13, "audit_head_restored", "missing")
    assert (exported["seq"], exported["action"]) == (14, "audit_export")
    assert verdict(trail)["ok"] is True

    sql(trail, "UPDATE audit_head SET seq = 3, hash = :h", h=events_of(trail)[2].hash)
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"]) == ("head_mismatch", 15)
    record(trail, 1)
    restored = events_of(trail)[-2]
    assert (restored.seq, restored.action, restored.details["found"], restored.details["head_seq"]) == (
        15, "audit_head_restored", "behind", 3,
    )  # fmt: skip
    assert verdict(trail) == {**verdict(trail), "ok": True, "events": 16, "checkpoint_seq": 16}


def test_a_forged_or_missing_checkpoint_file_is_named(trail: Storage) -> None:
    checkpoints = trail.settings.audit_checkpoint_file
    lines = checkpoints.read_text().splitlines()
    assert len(lines) == 5  # the anchor, then one a commit
    last = json.loads(lines[-1])
    checkpoints.write_text("\n".join([*lines, json.dumps({**last, "seq": 40})]) + "\n")
    result = verdict(trail)
    assert (result["kind"], result["first_bad_seq"]) == ("checkpoint_forged", 40)
    checkpoints.unlink()
    result = verdict(trail)
    assert (result["kind"], result["ok"]) == ("anchor_missing", False)


def test_other_hosts_checkpoint_files_vouch_for_their_commits(trail: Storage, tmp_path: Path) -> None:
    """A worker host (a data directory of its own, the same key) checkpoints its commits in its own
    file; a tail of its events cut (head rewound) passes the API host's file alone, not with the worker's."""
    worker = Storage.open(
        make_settings(
            tmp_path / "worker-host",
            trail.settings.resolved_database_url,
            tmp_path / "cache",
            audit=AuditSettings(key_file=trail.settings.audit_key_file),
        )
    )
    try:
        record(worker, 6)  # events 13-18, in two commits
    finally:
        worker.close()
    theirs = str(worker.settings.audit_checkpoint_file)
    assert theirs != str(trail.settings.audit_checkpoint_file)
    assert verdict(trail, "--checkpoints", theirs) == {**verdict(trail), "events": 18, "checkpoint_seq": 18}
    assert verdict(trail)["checkpoint_seq"] == 12, "the API host's file knows its own commits only"
    sql(trail, "DELETE FROM audit_events WHERE seq > 14")
    sql(trail, "UPDATE audit_head SET seq = 14, hash = :h", h=events_of(trail)[13].hash)
    assert verdict(trail)["ok"] is True, "what the API host's checkpoints cannot see"
    result = verdict(trail, "--checkpoints", theirs)
    assert (result["kind"], result["first_bad_seq"], result["events"]) == ("truncated", 15, 14)
    result = verdict(trail, "--checkpoints", str(tmp_path / "nowhere.jsonl"))
    assert (result["kind"], result["ok"]) == ("anchor_missing", False), "a file named and missing is a problem"


def test_the_key_file_is_private_and_required_once_used(trail: Storage, tmp_path: Path) -> None:
    key_file = trail.settings.audit_key_file
    assert key_file == trail.settings.data_dir / "keys" / "audit.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(trail.settings.audit_checkpoint_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() not in json.dumps([audit.event_dict(e) for e in events_of(trail)])
    settings = trail.settings
    key_file.chmod(0o640)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        Storage.open(settings)
    key_file.chmod(0o600)
    moved = tmp_path / "elsewhere" / "audit.key"  # the key kept on another volume: RFR_AUDIT__KEY_FILE
    moved.parent.mkdir()
    key_file.rename(moved)
    with pytest.raises(ConfigurationError, match="missing"):  # a new key would break every MAC: refused
        Storage.open(settings)
    done = rfr_audit_verify(trail)
    assert done.returncode == 2 and json.loads(done.stderr)["error"]["code"] == "configuration_error"
    env = {**os.environ, "RFR_AUDIT__KEY_FILE": str(moved)}
    elsewhere = subprocess.run(
        [sys.executable, "-m", "service.cli", "--data-dir", str(settings.data_dir), "audit", "verify", "--json"],
        capture_output=True, text=True, env={**env, "RFR_DATABASE_URL": settings.resolved_database_url}, timeout=120,
    )  # fmt: skip
    assert elsewhere.returncode == 0, elsewhere.stdout + elsewhere.stderr


def test_a_trail_from_before_the_key_verifies_as_unanchored(tmp_path: Path) -> None:
    """Events written before the anchor existed carry no MAC: reported as unanchored, not broken; the
    first anchored event chains onto them, so an edit or a recomputation of them is still seen."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    migrate(engine)
    with session_factory(engine)() as session, session.begin():
        for n in range(5):
            audit.append(session, OPERATOR, "before_the_key", "thing", n)
    engine.dispose()
    storage = Storage.open(make_settings(tmp_path / "data", url, tmp_path / "cache"))
    try:
        record(storage, 4)
        result = verdict(storage)
        assert (result["ok"], result["events"], result["anchored_from"], result["unanchored"]) == (True, 9, 6, 5)
        sql(storage, "UPDATE audit_events SET object_id = 'other' WHERE seq = 2")
        result = verdict(storage)
        assert (result["kind"], result["first_bad_seq"]) == ("edited", 2)
        # Recomputed from an unanchored event on: the anchor line vouches for event 5 as it was.
        rewrite_from(storage, 2)
        result = verdict(storage)
        assert (result["kind"], result["first_bad_seq"]) == ("replaced", 5)
    finally:
        storage.close()
