"""The durable job queue: every queued probe image is processed exactly once, or fails with a reason.

A worker leases one job at a time with an atomic conditional UPDATE (safe on SQLite and
PostgreSQL, across processes). Everything a job produces — faces, candidates, the image's
status and the job's — is written in one transaction that first re-checks the lease, so a crash
at any point leaves either nothing or everything. Jobs held by a worker that is gone (its
process on this host no longer exists, or its lease has expired) are taken over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.config import WorkerSettings
from service.db.image_store import ImageStore
from service.db.models import Candidate, Job, ProbeFace, ProbeImage, Submission
from service.domain.roles import Principal, Role
from service.embeddings.pipeline import FacePipeline
from service.errors import ServiceError
from service.services.gallery import embedding_to_bytes
from service.services.search import GallerySearcher
from service.services.submissions import FaceOutcome, analyse_and_search, audit_search

if TYPE_CHECKING:
    from service.services.linking import LinkingService

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobWorker:
    def __init__(
        self,
        factory: sessionmaker[Session],
        pipeline: FacePipeline,
        searcher: GallerySearcher,
        store: ImageStore,
        settings: WorkerSettings,
        linker: LinkingService | None = None,
    ) -> None:
        self.linker = linker  # links the unmatched faces of each processed image (unknown groups)
        self.factory = factory
        self.pipeline = pipeline
        self.searcher = searcher
        self.store = store
        self.settings = settings
        self.name = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    # -- leasing -----------------------------------------------------------------------------
    def release_orphans(self) -> int:
        """Re-queue jobs whose worker process on this host has died (crash or kill)."""
        host = socket.gethostname()
        released = 0
        with self.factory() as session, session.begin():
            running = session.execute(select(Job.id, Job.worker).where(Job.status == "running")).all()
            for job_id, worker in running:
                parts = (worker or "").split(":")
                if len(parts) >= 2 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1])):
                    session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.status == "running", Job.worker == worker)
                        .values(status="queued", worker=None, lease_until=None)
                    )
                    session.execute(
                        update(ProbeImage)
                        .where(ProbeImage.id == select(Job.probe_image_id).where(Job.id == job_id).scalar_subquery())
                        .values(status="queued")
                    )
                    released += 1
        if released:
            log.info("re-queued %d jobs of dead workers", released)
        return released

    def claim(self) -> int | None:
        now = _now()
        claimable = or_(Job.status == "queued", (Job.status == "running") & (Job.lease_until < now))
        with self.factory() as session, session.begin():
            for job_id in session.scalars(select(Job.id).where(claimable).order_by(Job.id).limit(5)):
                result = session.execute(
                    update(Job)
                    .where(Job.id == job_id, claimable)
                    .values(
                        status="running",
                        worker=self.name,
                        lease_until=now + timedelta(seconds=self.settings.lease_seconds),
                        attempts=Job.attempts + 1,
                        updated_at=now,
                    )
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    session.execute(
                        update(ProbeImage)
                        .where(ProbeImage.id == select(Job.probe_image_id).where(Job.id == job_id).scalar_subquery())
                        .values(status="processing")
                    )
                    return int(job_id)
        return None

    # -- processing --------------------------------------------------------------------------
    def process(self, job_id: int) -> str:
        with self.factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            image = session.get(ProbeImage, job.probe_image_id)
            assert image is not None
            submission = session.get(Submission, image.submission_id)
            assert submission is not None
            attempts, digest = job.attempts, image.sha256
            search_poor = submission.search_poor_faces
            image_id, submission_id = image.id, submission.id
            case_reference, purpose = submission.case_reference, submission.purpose
            # The worker searches on behalf of the submitter: the audit trail names them.
            submitter = Principal(username=submission.submitted_by, role=Role(submission.submitted_role), via="worker")
        try:
            image_array = self.pipeline.decode(self.store.get(digest))
            outcomes = analyse_and_search(self.pipeline, self.searcher, self.factory, image_array, search_poor)
        except ServiceError as exc:
            return self._finish_failed(job_id, image_id, exc.code, exc.message)
        except FileNotFoundError:
            return self._finish_failed(job_id, image_id, "image_missing", "the stored image file is missing")
        except Exception as exc:  # unexpected: retry, then fail with the reason
            log.exception("job %s failed", job_id)
            if attempts < self.settings.max_attempts:
                self._requeue(job_id, image_id, repr(exc))
                return "requeued"
            return self._finish_failed(job_id, image_id, "processing_error", repr(exc))

        threshold = self.searcher.threshold
        with self.factory() as session, session.begin():
            if not self._still_mine(session, job_id):
                return "lost_lease"
            faces = [
                ProbeFace(
                    probe_image_id=image_id,
                    face_index=index,
                    box=[round(v, 1) for v in outcome.record.face.box],
                    landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in outcome.record.face.landmarks],
                    det_score=round(outcome.record.face.det_score, 4),
                    quality_score=round(outcome.record.quality.score, 4),
                    usable=outcome.record.quality.usable,
                    reasons=list(outcome.record.quality.reasons),
                    pack_id=outcome.record.pack_id,
                    embedding=embedding_to_bytes(outcome.record.embedding),
                    searched=outcome.searched,
                    poor_face_override=outcome.override,
                    threshold=threshold,
                    candidates=[
                        Candidate(
                            rank=hit.rank,
                            score=hit.score,
                            above_threshold=hit.above_threshold,
                            subject_id=hit.subject_id,
                            template_id=hit.template_id,
                        )
                        for hit in outcome.candidates
                    ],
                )
                for index, outcome in enumerate(outcomes)
            ]
            session.add_all(faces)
            session.flush()  # one flush for every face and candidate of the still
            stored: list[tuple[int, FaceOutcome]] = [
                (int(face.id), outcome) for face, outcome in zip(faces, outcomes, strict=True)
            ]
            session.execute(
                update(ProbeImage).where(ProbeImage.id == image_id).values(status="done", processed_at=_now())
            )
            if self.linker is not None:
                self.linker.link_new_faces(session, image_id, stored)
            if any(o.searched for o in outcomes):
                audit_search(
                    session,
                    submitter,
                    image_id,
                    outcomes,
                    submission_id=submission_id,
                    case_reference=case_reference,
                    purpose=purpose,
                    probe_sha256=digest,
                    pack=self.pipeline.pack_id,
                    threshold=threshold,
                )
            session.execute(update(Job).where(Job.id == job_id).values(status="done", lease_until=None))
        return "done"

    def _still_mine(self, session: Session, job_id: int) -> bool:
        job = session.get(Job, job_id, with_for_update=True)
        return job is not None and job.status == "running" and job.worker == self.name

    def _finish_failed(self, job_id: int, image_id: int, code: str, message: str) -> str:
        with self.factory() as session, session.begin():
            if not self._still_mine(session, job_id):
                return "lost_lease"
            session.execute(
                update(ProbeImage)
                .where(ProbeImage.id == image_id)
                .values(status="failed", error_code=code, error_message=message[:2000], processed_at=_now())
            )
            session.execute(update(Job).where(Job.id == job_id).values(status="failed", last_error=message[:2000]))
        return "failed"

    def _requeue(self, job_id: int, image_id: int, message: str) -> None:
        with self.factory() as session, session.begin():
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == self.name)
                .values(status="queued", worker=None, lease_until=None, last_error=message[:2000])
            )
            session.execute(update(ProbeImage).where(ProbeImage.id == image_id).values(status="queued"))

    # -- loops -------------------------------------------------------------------------------
    def run_until_empty(self) -> int:
        """Process queued jobs until none is left; returns how many were processed."""
        self.release_orphans()
        done = 0
        while not self.stop_event.is_set():
            job_id = self.claim()
            if job_id is None:
                return done
            self.process(job_id)
            done += 1
        return done

    def _loop(self) -> None:
        self.release_orphans()
        while not self.stop_event.is_set():
            try:
                job_id = self.claim()
                if job_id is None:
                    self.stop_event.wait(self.settings.poll_seconds)
                    continue
                self.process(job_id)
            except Exception:  # keep the worker alive; the job's lease will expire and be retried
                log.exception("worker loop error")
                self.stop_event.wait(self.settings.poll_seconds)

    def start(self) -> None:
        self.stop_event.clear()
        self._thread = threading.Thread(target=self._loop, name="rfr-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
