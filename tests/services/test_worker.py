"""The job queue's worker: batches, retries, failures for good and leases lost to another worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update

from service.db.models import AuditEvent, Candidate, Job, ProbeFace, ProbeImage
from service.domain.roles import Principal, Role
from service.runtime import Runtime
from service.services.worker import JobOutcome, JobWorker
from tests.conftest import lfw_path
from tests.fixtures import NOT_ENROLLED, OPERATOR, submit_stills

ANALYST = Principal(username="ana", role=Role.ANALYST, via="test")
REVIEWER = Principal(username="rita", role=Role.REVIEWER, via="test")
CONFIRMER = Principal(username="cora", role=Role.CONFIRMER, via="test")


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


def test_a_subject_deleted_during_a_batch_is_left_out_and_a_decision_on_it_survives(runtime: Runtime) -> None:
    """Deleting a custody record while a sprint runs neither stalls the worker (its candidates would
    fail the foreign key) nor leaves a decided face pointing at a candidate that is gone."""
    subject_id = runtime.gallery.enrol(
        OPERATOR, "Tony_Blair", lfw_path("Tony_Blair", 4).read_bytes(), "tb.jpg"
    ).subject_id
    assert subject_id is not None
    [image_id] = submit_stills(runtime, ANALYST, [("Tony_Blair", 2)])
    tickets = runtime.worker.claim(limit=8)
    outcomes = [runtime.worker._analyse(t) for t in tickets]
    assert outcomes[0].faces and outcomes[0].faces[0].candidates[0].subject_id == subject_id
    runtime.gallery.delete_subject(OPERATOR, subject_id, "deleted mid-sprint")
    assert runtime.worker._store(outcomes) == ["done"]
    with runtime.factory() as session:
        face_id = session.scalar(select(ProbeFace.id).where(ProbeFace.probe_image_id == image_id))
        rows = session.execute(select(Candidate.rank, Candidate.subject_id).where(Candidate.probe_face_id == face_id))
        ranks, subjects = zip(*rows.all(), strict=True)
    assert subject_id not in subjects
    assert list(ranks) == list(range(1, len(ranks) + 1)), "the ranks close up"

    # A confirmed match on a subject later deleted keeps its state, no longer points at the candidate.
    again = runtime.gallery.enrol(OPERATOR, "Tony_Blair", lfw_path("Tony_Blair", 4).read_bytes(), "tb.jpg").subject_id
    [image_id] = submit_stills(runtime, ANALYST, [("Tony_Blair", 3)])
    runtime.worker.run_until_empty()
    with runtime.factory() as session:
        face_id = session.scalar(select(ProbeFace.id).where(ProbeFace.probe_image_id == image_id))
        top = session.scalars(select(Candidate).where(Candidate.probe_face_id == face_id, Candidate.rank == 1)).one()
        assert top.subject_id == again and face_id is not None
    runtime.review.decide(REVIEWER, face_id, "review", "possible_match", top.id)
    runtime.review.decide(CONFIRMER, face_id, "confirm")
    assert again is not None
    runtime.gallery.delete_subject(OPERATOR, again, "court order")
    with runtime.factory() as session:
        face = session.get(ProbeFace, face_id)
        assert face is not None and face.review_state == "confirmed" and face.review_candidate_id is None
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "subject_deleted")).all()[-1]
        assert event.details["decided_faces"] == [face_id]
    context = runtime.submissions.face_in_context(ANALYST, face_id)
    submission_id, result = context.submission_id, context.face
    assert result.review.state == "confirmed" and not any(c.subject_id == again for c in result.candidates)
    assert runtime.review.report(ANALYST, submission_id).confirmed_matches == 1


def test_a_batch_takes_the_linking_lock_before_the_audit_chain(runtime: Runtime) -> None:
    """Two workers storing at once deadlocked on PostgreSQL (benchmarks/workers.py, a sprint's stills
    sent twice): one had audited a matched still and waited to link the next, unmatched one; the other
    had linked and waited to audit. The store now takes the linking lock first, as review does."""
    ids = submit_stills(runtime, ANALYST, [("Colin_Powell", 6), (NOT_ENROLLED[0], 1)])  # matched, then unmatched
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", seen)
    try:
        assert runtime.worker.run_until_empty() == 2
    finally:
        event.remove(runtime.engine, "before_cursor_execute", seen)
    with runtime.factory() as session:
        faces = session.scalars(select(ProbeFace).where(ProbeFace.probe_image_id == ids[1])).all()
        assert any(not any(c.above_threshold for c in face.candidates) and face.usable for face in faces)
    first = {
        table: next(i for i, sql in enumerate(statements) if f"FROM {table}" in sql)
        for table in ("linking_state", "audit_head")
    }
    assert first["linking_state"] < first["audit_head"], "the linking lock, then the chain's"


def test_a_store_the_database_aborted_as_a_deadlock_is_tried_again_and_stored_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL rolls back the transaction it aborts: the batch is stored by trying again at once,
    not left leased until its lease runs out."""
    from sqlalchemy.exc import DBAPIError

    class DeadlockDetected(Exception):
        sqlstate = "40P01"

    images = [("Hugo_Chavez", 7), ("Laura_Bush", 3)]
    ids = submit_stills(runtime, ANALYST, images)
    worker = runtime.worker
    real, tries = worker._store_once, []

    def deadlocked_once(outcomes: list[JobOutcome]) -> list[str]:
        tries.append(len(outcomes))
        if len(tries) == 1:
            raise DBAPIError("SELECT ... FOR UPDATE", None, DeadlockDetected("deadlock detected"))
        return real(outcomes)

    monkeypatch.setattr(worker, "_store_once", deadlocked_once)
    assert worker.run_until_empty() == 2
    assert tries == [2, 2]
    for image_id, (name, n) in zip(ids, images, strict=True):
        expected = len(runtime.pipeline.analyse_bytes(lfw_path(name, n).read_bytes()).faces)
        status, _, _, attempts, faces = image_state(runtime, image_id)
        assert (status, attempts, faces) == ("done", 1, expected), "stored once, never re-leased"
