"""The engine skips Alembic for a database already at the newest migration: that shortcut must name
Alembic's real head, or a new migration would never run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from service.db.engine import HEAD_REVISION, alembic_config, make_engine, migrate, schema_revision


def test_head_revision_is_alembics_head(tmp_path: Path) -> None:
    script = ScriptDirectory.from_config(alembic_config(f"sqlite:///{tmp_path / 'x.db'}"))
    assert script.get_current_head() == HEAD_REVISION


def test_migrate_brings_an_old_database_to_head_and_skips_one_at_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rfr.db'}"
    engine = make_engine(url)
    assert schema_revision(engine) is None
    config = alembic_config(url)
    with engine.begin() as connection:  # a database made by an older release: at the previous revision
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    assert schema_revision(engine) == "0002"
    migrate(engine)
    assert schema_revision(engine) == HEAD_REVISION
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM unknown_groups")).scalar() == 0
    engine.dispose()


def test_a_database_at_head_opens_without_alembic(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rfr.db'}")
    migrate(engine)
    code = (
        "import sys; from service.db.engine import make_engine, migrate; "
        f"migrate(make_engine({str(engine.url)!r})); print('alembic' in sys.modules)"
    )
    engine.dispose()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"
