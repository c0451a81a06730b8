"""The job queue's worker: batches, retries, failures for good and leases lost to another worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from service.db.models import Job, ProbeFace, ProbeImage
from service.domain.roles import Principal, Role
from service.runtime import Runtime
from service.services.worker import JobWorker
from tests.conftest import lfw_path
from tests.fixtures import submit_stills

ANALYST = Principal(username="ana", role=Role.ANALYST, via="test")


def image_state(runtime: Runtime, image_id: int) -> tuple[str, str | None, str | None, int, int]:
    with runtime.factory() as session:
        image = session.get(ProbeImage, image_id)
        assert image is not None
        job = session.scalars(select(Job).where(Job.probe_image_id == image_id)).one()
        faces = session.scalar(select(func.count()).where(ProbeFace.probe_image_id == image_id)) or 0
        return image.status, image.error_code, image.error_message, job.attempts, faces


def test_a_batch_is_leased_in_order_and_stored_together(runtime: Runtime) -> None:
    images = [("Colin_Powell", 3), ("Serena_Williams", 4), ("Hugo_Chavez", 5)]
    ids = submit_stills(runtime, ANALYST, images)
    tickets = runtime.worker.claim(limit=2)
    assert [t.image_id for t in tickets] == ids[:2], "oldest jobs first, no more than the limit"
    assert {image_state(runtime, i)[0] for i in ids[:2]} == {"processing"}
    assert image_state(runtime, ids[2])[0] == "queued"
    # The leased batch is abandoned (its worker's lease runs out); run_until_empty takes it over.
    with runtime.factory() as session, session.begin():
        session.execute(update(Job).where(Job.status == "running").values(lease_until=datetime.now(UTC)))
    assert runtime.worker.run_until_empty() == 3
    for image_id, (name, n) in zip(ids, images, strict=True):
        status, _, _, attempts, faces = image_state(runtime, image_id)
        expected = len(runtime.pipeline.analyse_bytes(lfw_path(name, n).read_bytes()).faces)
        assert (status, faces) == ("done", expected) and expected >= 1
        assert attempts == (2 if image_id in ids[:2] else 1)


def test_a_worker_that_lost_its_lease_stores_nothing(runtime: Runtime) -> None:
    ids = submit_stills(runtime, ANALYST, [("Ariel_Sharon", 3), ("George_W_Bush", 7)])
    slow = runtime.worker
    tickets = slow.claim(limit=8)
    assert [t.image_id for t in tickets] == ids
    with runtime.factory() as session, session.begin():
        past = datetime.now(UTC) - timedelta(seconds=1)
        session.execute(update(Job).where(Job.id.in_([t.job_id for t in tickets])).values(lease_until=past))
    other = JobWorker(
        runtime.factory, runtime.pipeline, runtime.searcher, runtime.store, runtime.settings.worker, runtime.linking
    )
    other.name = "elsewhere:1:1"
    assert other.run_batch() == 2
    # The first worker finishes late: its results are dropped, nothing is stored twice.
    assert slow._store([slow._analyse(t) for t in tickets]) == ["lost_lease", "lost_lease"]
    for image_id in ids:
        status, _, _, attempts, faces = image_state(runtime, image_id)
        assert status == "done" and attempts == 2 and faces == 1


def test_unexpected_errors_are_retried_then_fail_with_the_reason(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    [image_id] = submit_stills(runtime, ANALYST, [("Jennifer_Capriati", 5)])
    calls: list[int] = []

    def broken(image: object) -> None:
        calls.append(1)
        raise RuntimeError("inference exploded")

    monkeypatch.setattr(runtime.pipeline, "analyse", broken)
    attempts = runtime.settings.worker.max_attempts
    assert runtime.worker.run_until_empty() == attempts
    status, code, message, tried, faces = image_state(runtime, image_id)
    assert (status, code, tried, faces, len(calls)) == ("failed", "processing_error", attempts, 0, attempts)
    assert message is not None and "inference exploded" in message


def test_a_missing_stored_image_fails_at_once(runtime: Runtime) -> None:
    [image_id] = submit_stills(runtime, ANALYST, [("Gerhard_Schroeder", 9)])
    with runtime.factory() as session:
        image = session.get(ProbeImage, image_id)
        assert image is not None
        digest = image.sha256
    runtime.store.path_for(digest).unlink()
    assert runtime.worker.run_until_empty() == 1
    status, code, _, tried, faces = image_state(runtime, image_id)
    assert (status, code, tried, faces) == ("failed", "image_missing", 1, 0)
