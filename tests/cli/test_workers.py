"""Workers on many machines: ``rfr serve --no-worker`` and two ``rfr worker`` processes on one
PostgreSQL, each with a data directory of its own (as on separate hosts: its own index replica and
audit checkpoints) and the one shared image store; one worker is SIGKILLed holding a leased batch,
and every image is still processed exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from select import select as wait_readable

import pytest
from sqlalchemy import func, select

from benchmarks.harness import ApiClient, free_port, mime_of, upload_images
from service.config import AuditSettings, Settings, StoreSettings
from service.db.engine import make_engine, session_factory
from service.db.models import AuditEvent, Candidate, Job, ProbeFace, ProbeImage
from service.embeddings.pipeline import FacePipeline
from service.errors import ConfigurationError
from service.runtime import Storage
from service.service_lock import ServiceLock, WorkerLock, queue_served
from tests.cli.test_cli_and_crash import link_folder, rfr, run
from tests.conftest import lfw_path
from tests.fixtures import POSTGRES_URL, REQUIRE_POSTGRES, make_settings, reset_postgres

PROBES = {"Colin_Powell": range(2, 14), "George_W_Bush": range(2, 18), "Tony_Blair": range(3, 15)}
TOTAL = sum(len(numbers) for numbers in PROBES.values())  # 40
LEASE_S = 8  # a killed worker's batch is taken over by the other after this


def test_submit_leaves_the_queue_to_a_service_or_a_worker_of_its_data_directory(tmp_path: Path) -> None:
    assert not queue_served(tmp_path), "nothing runs: rfr submit processes the queue itself"
    workers = [WorkerLock(tmp_path), WorkerLock(tmp_path)]
    assert all(lock.acquire() for lock in workers), "any number of workers on one data directory"
    assert queue_served(tmp_path)
    workers[0].release()
    assert queue_served(tmp_path), "one worker is still up"
    workers[1].release()
    assert not queue_served(tmp_path)
    service = ServiceLock(tmp_path)
    assert service.acquire() and not ServiceLock(tmp_path).acquire(), "one rfr serve per data directory"
    assert queue_served(tmp_path), "a service runs (with its worker, or with workers elsewhere)"
    service.release()
    assert not queue_served(tmp_path)


def _worker_jobs(session: object, pid: int, status: str) -> list[int]:
    query = select(Job.id).where(Job.status == status, Job.worker.like(f"%:{pid}:%"))
    return list(session.scalars(query))  # type: ignore[attr-defined]


def _ready(proc: subprocess.Popen[str], timeout_s: float = 240) -> dict[str, object]:
    """The worker's first JSON line (printed once its model and index replica are loaded)."""
    assert proc.stdout is not None
    readable, _, _ = wait_readable([proc.stdout], [], [], timeout_s)
    assert readable, f"the worker was not ready after {timeout_s:.0f} s"
    line = proc.stdout.readline()
    assert line, f"the worker exited: {proc.communicate(timeout=30)[1][-2000:]}"
    ready: dict[str, object] = json.loads(line)["ready"]
    return ready


@pytest.mark.skipif(not (POSTGRES_URL or REQUIRE_POSTGRES), reason="RFR_TEST_POSTGRES_URL not set")
def test_two_workers_on_one_postgresql_process_each_image_once_when_one_is_killed(
    tmp_path: Path, settings: Settings, pipeline: FacePipeline, request: pytest.FixtureRequest
) -> None:
    database: str = request.getfixturevalue("postgres_url")
    reset_postgres(database)
    api_dir, shared = tmp_path / "api", tmp_path / "shared-images"
    shared.mkdir()  # the share every host mounts
    common = {"RFR_STORE__PATH": str(shared)}
    # The workers' hosts: their own data directory, the API host's audit key (copied there in a real
    # deployment), short leases so the test need not wait two minutes for the takeover.
    worker_env = {
        **common,
        "RFR_AUDIT__KEY_FILE": str(api_dir / "keys" / "audit.key"),
        "RFR_WORKER__LEASE_SECONDS": str(LEASE_S),
        "RFR_WORKER__BATCH_SIZE": "4",
        "RFR_WORKER__POLL_SECONDS": "0.2",
    }
    gallery = link_folder(tmp_path / "gallery", {"Colin_Powell": [1], "George_W_Bush": [1]})
    assert (
        run(["gallery", "import", str(gallery), "--json", "-q"], api_dir, database, settings, env=common)["enrolled"]
        == 2
    )
    tokens = {}
    for user, role in (("ana", "analyst"), ("adam", "admin")):
        created = run(
            ["users", "create", user, "--role", role, "--password-stdin", "--token", "--json"],
            api_dir,
            database,
            settings,
            stdin="tangerine submarine 42\n",
            env=common,
        )
        tokens[user] = created["token"]

    port = free_port()
    serve = rfr(["serve", "--no-worker", "--port", str(port)], api_dir, database, settings, env=common)
    workers = [rfr(["worker", "--json"], tmp_path / f"w{i}", database, settings, env=worker_env) for i in (1, 2)]
    base = f"http://127.0.0.1:{port}"
    analyst, admin = ApiClient(base, tokens["ana"]), ApiClient(base, tokens["adam"])
    engine = make_engine(database)
    factory = session_factory(engine)
    try:
        analyst.wait_healthy(180, serve)
        replicas = [_ready(proc) for proc in workers]
        assert [r["gallery_templates"] for r in replicas] == [2, 2], "each worker built its own replica"
        assert all(r["store"] == str(shared) for r in replicas)
        # A subject enrolled through the API after the workers built their replicas: they reconcile
        # with the gallery version before they search.
        custody = ("tb.jpg", lfw_path("Tony_Blair", 2).read_bytes(), "image/jpeg")
        enrolled = admin.post_file("/gallery/enrol", "file", custody, {"custody_reference": "TB"})
        assert enrolled["status"] == "enrolled"

        submission = analyst.post_json("/submissions", {"case_reference": "MULTI/1", "purpose": "two workers"})["id"]
        files = []
        for name, numbers in PROBES.items():
            for n in numbers:
                data = lfw_path(name, n).read_bytes()
                files.append((f"{name}_{n:04d}{mime_of(data)[0]}", data, mime_of(data)[1]))
        image_ids = upload_images(analyst, submission, files, chunk=10)
        assert len(image_ids) == TOTAL

        # SIGKILL worker 1 while it holds a leased batch (stopped first, so the batch cannot be stored
        # between looking and killing) and after it has stored at least one batch of its own.
        victim, survivor = workers
        deadline = time.time() + 300
        held: list[int] = []
        while time.time() < deadline and not held:
            assert victim.poll() is None and survivor.poll() is None
            with factory() as session:
                stored = _worker_jobs(session, victim.pid, "done")
                busy = _worker_jobs(session, victim.pid, "running")
                left = session.scalar(select(func.count()).where(Job.status.in_(["queued", "running"])))
            assert left, "the sprint ended before worker 1 held a batch after storing one"
            if stored and busy:
                victim.send_signal(signal.SIGSTOP)
                with factory() as session:
                    held = _worker_jobs(session, victim.pid, "running")
                if not held:
                    victim.send_signal(signal.SIGCONT)
            else:
                time.sleep(0.02)
        assert held, "worker 1 never held a batch after storing one"
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        with factory() as session:
            done_at_kill = session.scalar(select(func.count()).where(ProbeImage.status == "done")) or 0
        assert done_at_kill < TOTAL, "the kill landed mid-sprint"

        while time.time() < deadline:
            status = analyst.get(f"/submissions/{submission}")
            if status["status"] == "complete":
                break
            assert survivor.poll() is None, survivor.communicate(timeout=30)[1][-2000:]
            time.sleep(0.2)
        assert status["status"] == "complete" and status["progress"]["done"] == TOTAL
        results = analyst.get(f"/submissions/{submission}/results")
    finally:
        for proc in (*workers, serve):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (*workers, serve):
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        analyst.close()
        admin.close()

    with factory() as session:
        assert dict(session.execute(select(ProbeImage.status, func.count()).group_by(ProbeImage.status)).all()) == {
            "done": TOTAL
        }
        jobs = session.execute(select(Job.id, Job.status, Job.worker, Job.attempts)).all()
        assert {status for _, status, _, _ in jobs} == {"done"} and len(jobs) == TOTAL
        by_pid = {int(str(worker).split(":")[1]) for _, _, worker, _ in jobs}
        assert by_pid == {victim.pid, survivor.pid}, "both workers stored batches; the API's service none"
        taken_over = {job_id: (worker, attempts) for job_id, _, worker, attempts in jobs if job_id in held}
        assert all(f":{survivor.pid}:" in str(w) and n >= 2 for w, n in taken_over.values()), taken_over
        faces = session.execute(select(ProbeFace.probe_image_id, ProbeFace.face_index)).all()
        assert len(faces) == len(set(faces)), "no face stored twice"
        ranks = session.execute(select(Candidate.probe_face_id, Candidate.rank)).all()
        assert len(ranks) == len(set(ranks)), "no candidate stored twice"
        searches = dict(
            session.execute(
                select(AuditEvent.object_id, func.count())
                .where(AuditEvent.action == "search", AuditEvent.object_type == "probe_image")
                .group_by(AuditEvent.object_id)
            ).all()
        )
        assert searches == {str(i): 1 for i in image_ids}, "each image searched and audited exactly once"
        digests = list(session.scalars(select(ProbeImage.sha256)))
    engine.dispose()

    # Each image holds exactly the faces the pipeline finds in it; the late subject was found.
    by_id = {image["id"]: image for image in results["images"]}
    for (name, data, _), image_id in list(zip(files, image_ids, strict=True))[::6]:
        assert len(by_id[image_id]["faces"]) == len(pipeline.analyse_bytes(data).faces), name
    blair = [by_id[i] for (name, _, _), i in zip(files, image_ids, strict=True) if name.startswith("Tony_Blair")]
    tops = [max(image["faces"], key=lambda f: f["quality"]["score"])["candidates"][0] for image in blair]
    assert sum(top["custody_reference"] == "TB" for top in tops) >= len(tops) - 2
    assert all((shared / d[:2] / d[2:4] / d).is_file() for d in digests), "every still in the shared store"
    assert not (tmp_path / "w1" / "images").exists() and not (tmp_path / "w2" / "images").exists()
    # A worker host that does not see the shared store is refused before it fails every job.
    for store, refused in ((None, True), (shared, False)):
        extra = {"store": StoreSettings(path=store)} if store else {}
        key = AuditSettings(key_file=api_dir / "keys" / "audit.key")
        misconfigured = Storage.open(make_settings(tmp_path / "w3", database, settings.cache_dir, audit=key, **extra))
        try:
            if refused:
                with pytest.raises(ConfigurationError, match="every host must see the one store"):
                    misconfigured.check_store()
            else:
                misconfigured.check_store()
        finally:
            misconfigured.close()

    # The workers' hosts checkpointed their own commits (the searches) in their own files.
    theirs = [str(tmp_path / f"w{i}" / "keys" / "audit-checkpoints.jsonl") for i in (1, 2)]
    assert all(Path(path).stat().st_size > 0 for path in theirs)
    verified = run(["audit", "verify", "--json", "--checkpoints", *theirs], api_dir, database, settings, env=common)
    assert verified["ok"] and verified["checkpoint_seq"] == verified["events"], verified
