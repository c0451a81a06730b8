"""The Alembic migrations build exactly the schema the SQLAlchemy models declare, on each database."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from service.db.engine import make_engine, migrate
from service.db.models import Base


def schema_diff(engine: Engine) -> list[Any]:
    """What autogenerate would change (types compared too) to make the database match the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migrations_build_the_models_schema(database: str) -> None:
    engine = make_engine(database)
    try:
        empty = schema_diff(engine)
        added = {change[1].name for change in empty if change[0] == "add_table"}
        assert added == set(Base.metadata.tables), "the comparison sees every model table missing at first"
        migrate(engine)
        migrate(engine)  # idempotent: a second upgrade to head changes nothing
        diff = schema_diff(engine)
        assert diff == [], "\n".join(map(repr, diff))
    finally:
        engine.dispose()


def test_sqlite_keeps_autoincrement_where_the_models_ask_for_it(tmp_path: Any) -> None:
    """A table rebuilt by a later migration (SQLite's batch mode) keeps AUTOINCREMENT: ids of deleted
    persons and groups are never reused (audit events and decisions name them)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'auto.db'}")
    try:
        migrate(engine)
        wanted = {name for name, table in Base.metadata.tables.items() if table.kwargs.get("sqlite_autoincrement")}
        assert wanted >= {"probe_persons", "person_candidates", "unknown_groups", "group_members"}
        with engine.connect() as conn:
            sql: dict[str, str] = dict(
                conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
            )
        assert all("AUTOINCREMENT" in sql[name] for name in wanted), {n: sql[n] for n in wanted}
    finally:
        engine.dispose()
