"""Migrations step down and up again on a database that holds a gallery, probes and unknown groups."""

from __future__ import annotations

from alembic import command
from sqlalchemy import func, inspect, select

from service.db.engine import alembic_config, make_engine, migrate, schema_change
from service.db.models import Candidate, FaceTemplate, GroupMember, ProbeImage
from service.domain.roles import Principal, Role
from service.runtime import Runtime
from tests.fixtures import submit_stills

ANALYST = Principal(username="ana", role=Role.ANALYST, via="test")


def test_migration_0003_downgrades_and_upgrades(database: str, runtime: Runtime) -> None:
    """It drops and recreates the linking tables of the module's database, which hold an unknown's group."""
    submit_stills(runtime, ANALYST, [("Tom_Ridge", 1), ("Tom_Ridge", 2)])
    runtime.worker.run_until_empty()
    with runtime.factory() as session:
        assert session.scalar(select(func.count()).select_from(GroupMember)), "the linking tables hold data"
    engine = make_engine(database)
    config = alembic_config(database)
    tables = {"linking_state", "unknown_groups", "group_members", "group_decisions"}
    try:
        assert tables <= set(inspect(engine).get_table_names())
        with schema_change(engine) as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0002")
        assert not tables & set(inspect(engine).get_table_names())
        migrate(engine)
        assert tables <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    with runtime.factory() as session:
        assert (session.scalar(select(func.count()).select_from(ProbeImage)) or 0) > 0


def test_migration_0004_downgrades_and_upgrades(database: str, runtime: Runtime) -> None:
    """Persons, person candidates, views and fused templates go and come back; the gallery stays."""
    submit_stills(runtime, ANALYST, [("Tom_Ridge", 3)])
    runtime.worker.run_until_empty()
    engine = make_engine(database)
    config = alembic_config(database)
    tables = {"probe_persons", "person_candidates"}
    try:
        assert tables <= set(inspect(engine).get_table_names())
        with schema_change(engine) as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")
        assert not tables & set(inspect(engine).get_table_names())
        assert "view" not in {c["name"] for c in inspect(engine).get_columns("custody_images")}
        migrate(engine)
        assert tables <= set(inspect(engine).get_table_names())
        assert "kind" in {c["name"] for c in inspect(engine).get_columns("face_templates")}
    finally:
        engine.dispose()
    with runtime.factory() as session:
        assert (session.scalar(select(func.count()).select_from(FaceTemplate)) or 0) > 0
        unlinked = session.scalar(select(func.count()).select_from(Candidate).where(Candidate.template_id.is_(None)))
        assert unlinked == 0, "copying a table on SQLite must not cascade to the rows that refer to it"
