"""Shared fixtures of the services, API, CLI and database tests: a real database (SQLite file, and
PostgreSQL when available), a real FAISS index and the real model pack, with a small LFW custody
gallery, its users and their tokens. Loaded for every test folder by ``tests/conftest.py``."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from sqlalchemy import create_engine, make_url, text

from benchmarks.harness import free_port
from service.app import create_app
from service.config import Settings, WorkerSettings
from service.domain.roles import Principal, Role, operator_principal
from service.embeddings.pipeline import FacePipeline
from service.runtime import Runtime
from service.services.submissions import Upload
from tests.conftest import lfw_path

OPERATOR = operator_principal()
PASSWORD = "correct horse battery staple"
# Two of each deciding role, so that "a second, different person" can be tested.
USERS = {
    "ana": Role.ANALYST,
    "ann": Role.ANALYST,
    "rita": Role.REVIEWER,
    "rob": Role.REVIEWER,
    "cora": Role.CONFIRMER,
    "carl": Role.CONFIRMER,
    "audrey": Role.AUDITOR,
    "adam": Role.ADMIN,
}

POSTGRES_URL = os.environ.get("RFR_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("RFR_TEST_REQUIRE_POSTGRES") == "1"

# Enrolled with their first image; probes are their other images.
ENROLLED = [
    "Colin_Powell",
    "Serena_Williams",
    "Jennifer_Capriati",
    "Hugo_Chavez",
    "Ariel_Sharon",
    "Gloria_Macapagal_Arroyo",
    "Jean_Chretien",
    "Laura_Bush",
    "Jacques_Chirac",
    "Vladimir_Putin",
    "Alvaro_Uribe",
    "Gerhard_Schroeder",
]
# Distractors: people with a single LFW image, enrolled so the gallery is not trivially small.
DISTRACTORS = ["AJ_Cook", "Aaron_Eckhart", "Abdoulaye_Wade", "Adam_Sandler", "Alan_Greenspan", "Al_Gore"]
# Never enrolled: searches of them must come back with nothing above the threshold.
NOT_ENROLLED = ["John_Ashcroft", "Donald_Rumsfeld", "Hans_Blix", "Lleyton_Hewitt"]


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def database_params() -> list[object]:
    params: list[object] = [pytest.param("sqlite", id="sqlite")]
    if POSTGRES_URL or REQUIRE_POSTGRES:
        params.append(pytest.param("postgresql", id="postgresql"))
    else:
        params.append(
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.skip("RFR_TEST_POSTGRES_URL not set"))
        )
    return params


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test session's own on the server RFR_TEST_POSTGRES_URL names.

    Concurrent test runs on one server (a developer's and CI's) then never reset each other's schema.
    """
    if not POSTGRES_URL:
        pytest.fail("RFR_TEST_REQUIRE_POSTGRES is set but RFR_TEST_POSTGRES_URL is not")
    url = make_url(POSTGRES_URL)
    name = f"{url.database}_{os.getpid()}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=database_params(), scope="module")
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'rfr.db'}"
    url: str = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


def make_settings(data_dir: Path, database: str, cache_dir: Path, **overrides: object) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database,
        cache_dir=cache_dir,
        worker=WorkerSettings(enabled=False, poll_seconds=0.05),
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def data_dir(database: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory per database: its audit key and checkpoints belong to that database's trail."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def runtime(database: str, data_dir: Path, settings: Settings, pipeline: FacePipeline) -> Iterator[Runtime]:
    rt = Runtime.build(make_settings(data_dir, database, settings.cache_dir), pipeline=pipeline)
    for name in ENROLLED + DISTRACTORS:
        outcome = rt.gallery.enrol(OPERATOR, name, lfw_path(name, 1).read_bytes(), f"{name}_0001.jpg")
        assert outcome.status == "enrolled", (name, outcome)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def tokens(runtime: Runtime) -> dict[str, str]:
    """An API token per test user (created once per database)."""
    out: dict[str, str] = {}
    for name, role in USERS.items():
        runtime.users.create(OPERATOR, name, role.value, PASSWORD)
        out[name] = runtime.users.issue_token(OPERATOR, name)
    return out


def auth(tokens: dict[str, str], user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[user]}"}


def restart(runtime: Runtime, database: str, data_dir: Path, settings: Settings, pipeline: FacePipeline) -> Runtime:
    """Another runtime on ``runtime``'s database and data directory (as another process, or after a restart)."""
    return Runtime.build(make_settings(data_dir, database, settings.cache_dir), pipeline=pipeline)


def submit_stills(
    runtime: Runtime, analyst: Principal, images: list[tuple[str, int]], case: str = "CASE/W/1"
) -> list[int]:
    """One submission of LFW stills (name, number) through the services; returns the probe image ids."""
    submission_id = runtime.submissions.create(analyst, "CASE/W/1", "worker test")
    uploads = [Upload(f"{name}_{n}.jpg", lfw_path(name, n).read_bytes()) for name, n in images]
    return runtime.submissions.add_images(analyst, submission_id, uploads)


def top_lists(runtime: Runtime, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    """Each query's gallery hits as (custody reference, score)."""
    found = runtime.searcher.search(queries, runtime.pipeline.pack_id)
    return [[(h.custody_reference, round(h.score, 5)) for h in hits] for hits in found]


@contextmanager
def serving(runtime: Runtime) -> Iterator[str]:
    """The service over ``runtime`` listening on a free loopback port, in a thread; its base URL."""
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not uv.started and time.time() < deadline:
        time.sleep(0.05)
    assert uv.started, "the service did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(10)
