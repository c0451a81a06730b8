"""service.db.engine on SQLite: which sessions take the write lock, and transaction()'s commit and rollback."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.engine import make_engine, migrate, read_session, session_factory, transaction
from service.db.models import Job, Submission


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return tmp_path / "locks.db"


@pytest.fixture
def engine(sqlite_file: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{sqlite_file}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def another_writer_can_begin(sqlite_file: Path) -> bool:
    """Whether a second connection (not waiting) could take SQLite's write lock now."""
    conn = sqlite3.connect(sqlite_file, timeout=0.05, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        conn.close()


def test_sqlite_read_sessions_neither_wait_for_nor_block_the_writer(
    factory: sessionmaker[Session], sqlite_file: Path
) -> None:
    """The worker's searches and progress reads must not queue behind its store thread's writes."""
    with factory() as writer, writer.begin():  # BEGIN IMMEDIATE: holds SQLite's write lock
        writer.execute(update(Job).values(status="queued"))
        started = time.monotonic()
        with read_session(factory) as reader:
            assert reader.scalar(select(func.count()).select_from(Job)) == 0
        assert time.monotonic() - started < 5, "the read waited for the write lock"
    with read_session(factory) as reader, reader.begin():
        assert reader.scalar(select(func.count()).select_from(Job)) == 0
        assert another_writer_can_begin(sqlite_file), "an open read transaction blocked a writer"


def test_sqlite_default_sessions_take_the_write_lock_when_they_begin(
    factory: sessionmaker[Session], sqlite_file: Path
) -> None:
    assert another_writer_can_begin(sqlite_file)
    with factory() as session, session.begin():
        session.scalar(select(func.count()).select_from(Job))  # only a read, yet the lock is held
        assert not another_writer_can_begin(sqlite_file)
    assert another_writer_can_begin(sqlite_file), "the lock goes with the transaction"


def test_transaction_commits_on_success_and_rolls_back_on_error(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        session.add(Submission(case_reference="KEPT", purpose="p", submitted_by="ana", pack_id="test"))
    with pytest.raises(RuntimeError), transaction(factory) as session:
        session.add(Submission(case_reference="DROPPED", purpose="p", submitted_by="ana", pack_id="test"))
        session.flush()
        raise RuntimeError("boom")
    with read_session(factory) as reader:
        assert list(reader.scalars(select(Submission.case_reference))) == ["KEPT"]
