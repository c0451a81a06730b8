"""Engine, sessions and migrations. SQLite (WAL) by default; any SQLAlchemy URL works."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest migration's revision; tests/db checks it is Alembic's head. A database already at it
# opens without loading Alembic (a third of a short command's start-up).
HEAD_REVISION = "0009"
READ_ONLY_OPTION = "rfr_read_only"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, emit BEGIN (see the "begin" hook below).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection: Any) -> None:
            # Take the write lock when a transaction starts, not when it first writes: a transaction
            # that read and then writes would otherwise fail at once in WAL mode when another wrote
            # in between. Transactions are short; this serialises them, as PostgreSQL's row locks do.
            # A read-only session (``read_session``) starts a deferred transaction instead: in WAL
            # mode it reads a snapshot without waiting for, or blocking, any writer.
            read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def schema_revision(engine: Engine) -> str | None:
    """The migration the database is at (None: never migrated)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def schema_change(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for migrations. On SQLite, foreign keys are off meanwhile: a
    batch migration copies a table and drops the old one, and with them on, the drop would cascade
    to every row that refers to it (templates, candidates) and delete or unlink them."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        raw = connection.connection.driver_connection if sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")  # outside any transaction, where SQLite honours it
        try:
            with connection.begin():
                yield connection
                if raw is not None:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"a migration left rows that refer to nothing: {broken[:5]}")
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest migration (idempotent)."""
    if schema_revision(engine) == HEAD_REVISION:
        return
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with schema_change(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_session(factory: sessionmaker[Session]) -> Session:
    """A session that only reads. On SQLite its transaction neither waits for nor blocks writers
    (the default sessions take the write lock at BEGIN); elsewhere it is an ordinary session.
    Writing in it is a bug: on SQLite the write can fail if another transaction wrote meanwhile.
    """
    bind = factory.kw["bind"]
    return factory(bind=bind.execution_options(**{READ_ONLY_OPTION: True}))


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
