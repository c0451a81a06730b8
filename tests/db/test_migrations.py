"""Migrations step down and up again on a database that holds a gallery, probes and unknown groups."""

from __future__ import annotations

from alembic import command
from sqlalchemy import func, inspect, select

from service.db.engine import alembic_config, make_engine, migrate
from service.db.models import GroupMember, ProbeImage
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
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0002")
        assert not tables & set(inspect(engine).get_table_names())
        migrate(engine)
        assert tables <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    with runtime.factory() as session:
        assert (session.scalar(select(func.count()).select_from(ProbeImage)) or 0) > 0
