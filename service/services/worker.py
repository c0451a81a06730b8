"""The durable job queue: every queued probe image is processed exactly once, or fails with a reason.

A worker leases a small batch of jobs (``worker.batch_size``) with an atomic conditional UPDATE
(safe on SQLite and PostgreSQL, across processes), runs the face pipeline on each still outside
any transaction, then writes everything the batch produced — faces, candidates, the images'
statuses and the jobs', the audit events — in one transaction that first re-checks each lease,
so a crash at any point leaves either nothing or everything of a batch. Jobs held by a worker
that is gone (its process on this host no longer exists, or its lease has expired) are taken over.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service.config import WorkerSettings
from service.db.image_store import ImageStore
from service.db.models import Candidate, Job, ProbeFace, ProbeImage, Submission
from service.db.queries import deleted_subjects
from service.db.vectors import embedding_to_bytes
from service.domain.clips import CLIP, STILL
from service.domain.roles import Principal, Role
from service.domain.search import FaceOutcome, without_subjects
from service.embeddings.pipeline import FacePipeline
from service.errors import ClipUnreadable, ServiceError
from service.services.persons import StoredTrack
from service.services.search import GallerySearcher, analyse_and_search, audit_search
from service.services.video import ClipJob, ClipOutcome, ClipProcessor, LeaseLost, Shot

if TYPE_CHECKING:
    from service.services.linking import LinkingService
    from service.services.persons import PersonBuilder

log = logging.getLogger(__name__)

# A store transaction PostgreSQL aborted to break a deadlock (or a serialization failure) is tried
# again this many times in all: it rolled back whole, so trying again stores the batch exactly once.
STORE_TRIES = 3
_RETRYABLE_SQLSTATES = {"40P01", "40001"}


def _retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


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


@dataclass(frozen=True, slots=True)
class JobTicket:
    """A leased job with what processing it needs, read in the transaction that leased it."""

    job_id: int
    image_id: int
    attempts: int
    digest: str
    submission_id: int
    case_reference: str
    purpose: str
    search_poor: bool
    submitter: Principal
    incident_reference: str = ""
    media: str = STILL
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """One job's result: a still's faces or a clip's tracks (done), a failure for good (code, message),
    or an error to retry."""

    ticket: JobTicket
    faces: list[FaceOutcome] | None = None
    clip: ClipOutcome | None = None
    failure: tuple[str, str] | None = None
    retry: str | None = None

    @property
    def done(self) -> bool:
        return self.faces is not None or self.clip is not None

    @property
    def stored_faces(self) -> list[FaceOutcome]:
        """The faces the job stores: the still's, or the clip's shots' in track order."""
        if self.clip is not None:
            return [shot.outcome for shot in self.clip.shots]
        return self.faces or []


class JobWorker:
    def __init__(
        self,
        factory: sessionmaker[Session],
        pipeline: FacePipeline,
        searcher: GallerySearcher,
        store: ImageStore,
        settings: WorkerSettings,
        linker: LinkingService | None = None,
        persons: PersonBuilder | None = None,
        clips: ClipProcessor | None = None,
    ) -> None:
        self.linker = linker  # links the unmatched faces of each processed image (unknown groups)
        self.persons = persons  # groups the faces of each incident its last still completes
        self.clips = clips  # processes clips in segments; without it a clip fails as unsupported
        self.factory = factory
        self.pipeline = pipeline
        self.searcher = searcher
        self.store = store
        self.settings = settings
        self.name = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        # Stores one batch's results while the next batch is analysed (at most one in flight).
        self._writer = self._new_writer()
        self._pending: Future[list[str]] | None = None
        self.footage: Callable[[float], object] | None = None  # told each clip segment's seconds

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

    def claim(self, limit: int = 1) -> list[JobTicket]:
        """Lease up to ``limit`` queued (or abandoned) jobs in one transaction, oldest first."""
        now = _now()
        claimable = or_(Job.status == "queued", (Job.status == "running") & (Job.lease_until < now))
        with self.factory() as session, session.begin():
            while True:
                wanted = list(session.scalars(select(Job.id).where(claimable).order_by(Job.id).limit(limit)))
                if not wanted:
                    return []
                # Another worker may lease some of these first (PostgreSQL re-checks the WHERE
                # clause on each row it locks), so the UPDATE says which ones this worker got.
                claimed = list(
                    session.scalars(
                        update(Job)
                        .where(Job.id.in_(wanted), claimable)
                        .values(
                            status="running",
                            worker=self.name,
                            lease_until=now + timedelta(seconds=self.settings.lease_seconds),
                            attempts=Job.attempts + 1,
                            updated_at=now,
                        )
                        .returning(Job.id)
                    )
                )
                if claimed:
                    break
            session.execute(
                update(ProbeImage)
                .where(ProbeImage.id.in_(select(Job.probe_image_id).where(Job.id.in_(claimed))))
                .values(status="processing")
            )
            rows = session.execute(
                select(
                    Job.id,
                    Job.attempts,
                    ProbeImage.id,
                    ProbeImage.sha256,
                    ProbeImage.incident_reference,
                    ProbeImage.media,
                    ProbeImage.duration_s,
                    Submission,
                )
                .join(ProbeImage, ProbeImage.id == Job.probe_image_id)
                .join(Submission, Submission.id == ProbeImage.submission_id)
                .where(Job.id.in_(claimed))
                .order_by(Job.id)
            ).all()
        return [
            JobTicket(
                job_id=int(job_id),
                image_id=int(image_id),
                attempts=int(attempts),
                digest=str(digest),
                submission_id=int(submission.id),
                case_reference=submission.case_reference,
                purpose=submission.purpose,
                search_poor=bool(submission.search_poor_faces),
                # The worker searches on behalf of the submitter: the audit trail names them.
                submitter=Principal(
                    username=submission.submitted_by, role=Role(submission.submitted_role), via="worker"
                ),
                incident_reference=str(incident or ""),
                media=str(media),
                duration_s=duration,
            )
            for job_id, attempts, image_id, digest, incident, media, duration, submission in rows
        ]

    # -- processing --------------------------------------------------------------------------
    def run_batch(self) -> int:
        """Lease up to ``batch_size`` jobs, analyse each still, hand the results to the store thread.

        Inference runs outside any transaction; the batch's results are written in one transaction
        on a second thread while the next batch is analysed, so database work overlaps inference
        (call ``flush`` to wait for it). A crash before that commit leaves the batch's jobs leased
        and unprocessed: they are taken over (orphan or expired lease) and processed again, so each
        still ends up processed exactly once. Returns the jobs leased.
        """
        tickets = self.claim(self.settings.batch_size)
        if not tickets and self._pending is not None:
            self.flush()  # the batch being stored may give jobs back to the queue (retries)
            tickets = self.claim(self.settings.batch_size)
        outcomes = [self._analyse(ticket) for ticket in tickets]
        try:
            self.flush()  # at most one batch in flight; a failed store's error is raised here
        finally:
            if outcomes:
                self._pending = self._writer.submit(self._store, outcomes)
        return len(tickets)

    def flush(self) -> list[str]:
        """Wait until the batch being stored is committed; its statuses, or its error re-raised."""
        pending, self._pending = self._pending, None
        return pending.result() if pending is not None else []

    def _analyse(self, ticket: JobTicket) -> JobOutcome:
        try:
            if ticket.media == CLIP:
                return JobOutcome(ticket, clip=self._analyse_clip(ticket))
            still = self.pipeline.decode_still(self.store.path_for(ticket.digest))
            faces = analyse_and_search(self.pipeline, self.searcher, still, ticket.search_poor)
        except LeaseLost as exc:  # another worker has the job now: leave it to them
            log.warning("%s", exc.message)
            return JobOutcome(ticket, retry=exc.message)
        except ServiceError as exc:
            return JobOutcome(ticket, failure=(exc.code, exc.message))
        except FileNotFoundError:
            return JobOutcome(ticket, failure=("image_missing", "the stored image file is missing"))
        except Exception as exc:  # unexpected: retry, then fail with the reason
            log.exception("job %s failed", ticket.job_id)
            if ticket.attempts < self.settings.max_attempts:
                return JobOutcome(ticket, retry=repr(exc))
            return JobOutcome(ticket, failure=("processing_error", repr(exc)))
        return JobOutcome(ticket, faces=faces)

    def _analyse_clip(self, ticket: JobTicket) -> ClipOutcome:
        if self.clips is None:
            raise ClipUnreadable("this worker does not process clips", code="clip_unsupported")
        job = ClipJob(ticket.job_id, ticket.image_id, ticket.digest, ticket.duration_s or 0.0, ticket.search_poor)
        return self.clips.analyse(job, self.name, self.settings.lease_seconds, on_segment=self.footage)

    def _store(self, outcomes: list[JobOutcome]) -> list[str]:
        """Everything the batch produced, in one transaction that first re-checks each lease (tried
        again when the database aborted it to break a deadlock with another worker's)."""
        for attempt in range(1, STORE_TRIES + 1):
            try:
                statuses = self._store_once(outcomes)
                break
            except DBAPIError as exc:
                if attempt == STORE_TRIES or not _retryable(exc):
                    raise
                log.warning("storing a batch was aborted (%s); trying again", getattr(exc.orig, "sqlstate", ""))
        if self.persons is not None:  # an incident whose last still this batch finished
            finished = [
                o.ticket.image_id
                for o, status in zip(outcomes, statuses, strict=True)
                if status in ("done", "failed") and o.ticket.incident_reference
            ]
            self.persons.build_for_images(finished)
        return statuses

    def _store_once(self, outcomes: list[JobOutcome]) -> list[str]:
        statuses = []
        with self.factory() as session, session.begin():
            if self.linker is not None and self.linker.enabled and any(o.done for o in outcomes):
                # Linking an image's faces takes the linking lock; auditing takes the chain's. Every
                # transaction takes the linking lock first (review does), or two workers storing at
                # once deadlock: one audited an image and waits to link, the other linked and waits
                # to audit.
                self.linker.lock(session)
            mine = set(
                session.scalars(
                    select(Job.id)
                    .where(
                        Job.id.in_([o.ticket.job_id for o in outcomes]),
                        Job.status == "running",
                        Job.worker == self.name,
                    )
                    .with_for_update()
                )
            )
            done: list[JobOutcome] = []
            for outcome in outcomes:
                ticket = outcome.ticket
                if ticket.job_id not in mine:
                    statuses.append("lost_lease")
                elif outcome.done:
                    done.append(outcome)
                    statuses.append("done")
                elif outcome.retry is not None:
                    session.execute(
                        update(Job)
                        .where(Job.id == ticket.job_id)
                        .values(status="queued", worker=None, lease_until=None, last_error=outcome.retry[:2000])
                    )
                    session.execute(update(ProbeImage).where(ProbeImage.id == ticket.image_id).values(status="queued"))
                    statuses.append("requeued")
                else:
                    assert outcome.failure is not None
                    code, message = outcome.failure
                    session.execute(
                        update(ProbeImage)
                        .where(ProbeImage.id == ticket.image_id)
                        .values(status="failed", error_code=code, error_message=message[:2000], processed_at=_now())
                    )
                    session.execute(
                        update(Job).where(Job.id == ticket.job_id).values(status="failed", last_error=message[:2000])
                    )
                    statuses.append("failed")
            if done:
                self._store_done(session, done)
        return statuses

    def _store_done(self, session: Session, done: list[JobOutcome]) -> None:
        """The faces and candidates of every processed still and clip of a batch, a few statements in all."""
        done = _without_deleted_subjects(session, done)
        threshold = self.searcher.threshold
        face_rows = [
            {
                "probe_image_id": outcome.ticket.image_id,
                "face_index": index,
                "box": [round(v, 1) for v in face.record.face.box],
                "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.record.face.landmarks],
                "det_score": round(face.record.face.det_score, 4),
                "quality_score": round(face.record.quality.score, 4),
                "usable": face.record.quality.usable,
                "reasons": list(face.record.quality.reasons),
                "pack_id": face.record.pack_id,
                "embedding": embedding_to_bytes(face.record.embedding),
                "searched": face.searched,
                "poor_face_override": face.override,
                "threshold": threshold,
                "frame_sha256": shot.frame_sha256 if shot is not None else None,
                "time_s": round(shot.time_s, 3) if shot is not None else None,
            }
            for outcome in done
            for index, (face, shot) in enumerate(zip(outcome.stored_faces, _shots_of(outcome), strict=True))
        ]
        face_ids: list[int] = []
        if face_rows:
            # Bulk inserts: one statement for the faces (their ids come back in row order), one
            # for all their candidates.
            returning = insert(ProbeFace).returning(ProbeFace.id, sort_by_parameter_order=True)
            face_ids = [int(i) for i in session.scalars(returning, face_rows).all()]
        ids = iter(face_ids)
        stored = [[(next(ids), face) for face in outcome.stored_faces] for outcome in done]
        candidate_rows = [
            {
                "probe_face_id": face_id,
                "rank": hit.rank,
                "score": hit.score,
                "above_threshold": hit.above_threshold,
                "subject_id": hit.subject_id,
                "template_id": hit.template_id,
            }
            for faces in stored
            for face_id, face in faces
            for hit in face.candidates
        ]
        if candidate_rows:
            session.execute(insert(Candidate), candidate_rows)
        image_ids = [outcome.ticket.image_id for outcome in done]
        session.execute(
            update(ProbeImage).where(ProbeImage.id.in_(image_ids)).values(status="done", processed_at=_now())
        )
        session.execute(
            update(Job).where(Job.id.in_([o.ticket.job_id for o in done])).values(status="done", lease_until=None)
        )
        clips = [(outcome, faces) for outcome, faces in zip(done, stored, strict=True) if outcome.clip is not None]
        if clips:
            ClipProcessor.delete_segments(session, [outcome.ticket.image_id for outcome, _ in clips])
        if self.persons is not None:
            # A still without an incident: each face a person of one, stored with it; a clip: each
            # track a person of its shots.
            self.persons.store_alone(
                session,
                [
                    (outcome.ticket.submission_id, face_id, face)
                    for outcome, faces in zip(done, stored, strict=True)
                    if outcome.clip is None and not outcome.ticket.incident_reference
                    for face_id, face in faces
                ],
            )
            for outcome, faces in clips:
                assert outcome.clip is not None
                self.persons.store_tracks(
                    session,
                    outcome.ticket.submission_id,
                    outcome.ticket.incident_reference,
                    outcome.ticket.image_id,
                    _stored_tracks(outcome.ticket.image_id, outcome.clip, [face_id for face_id, _ in faces]),
                )
        for outcome, faces in zip(done, stored, strict=True):
            ticket = outcome.ticket
            if self.linker is not None:
                self.linker.link_new_faces(session, ticket.image_id, faces)
            if any(face.searched for _, face in faces):
                extra = {}
                if outcome.clip is not None:
                    extra = {"media": CLIP, "tracks": len(outcome.clip.tracks), "shots": len(faces)}
                audit_search(
                    session,
                    ticket.submitter,
                    ticket.image_id,
                    [face for _, face in faces],
                    submission_id=ticket.submission_id,
                    case_reference=ticket.case_reference,
                    purpose=ticket.purpose,
                    probe_sha256=ticket.digest,
                    pack=self.pipeline.pack_id,
                    threshold=threshold,
                    **extra,
                )

    # -- loops -------------------------------------------------------------------------------
    def recover(self) -> None:
        """What a crashed worker left: its leased jobs, and persons of incidents it completed."""
        self.release_orphans()
        if self.persons is not None:
            self.persons.build_missing()

    def run_until_empty(
        self, progress: Callable[[int], object] | None = None, footage: Callable[[float], object] | None = None
    ) -> int:
        """Process queued jobs until none is left and every result is stored; returns how many.

        ``progress`` hears of each batch's jobs, ``footage`` of each clip segment's seconds."""
        self.recover()
        self.footage = footage
        done = 0
        try:
            while not self.stop_event.is_set():
                leased = self.run_batch()
                if not leased:
                    break
                done += leased
                if progress is not None:
                    progress(leased)
        finally:
            self.footage = None
            self.flush()
        return done

    def _loop(self) -> None:
        self.recover()
        while not self.stop_event.is_set():
            try:
                if not self.run_batch():
                    self.flush()
                    self.stop_event.wait(self.settings.poll_seconds)
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
            if self._thread.is_alive():
                return  # still analysing: it stores what it has when it gets there
        try:
            self.flush()
        except Exception:  # its jobs stay leased and are taken over after a restart
            log.exception("storing the last batch failed")
        # Let the store thread go; a later start() or run_until_empty() gets a new one.
        self._writer.shutdown(wait=True)
        self._writer = self._new_writer()

    @staticmethod
    def _new_writer() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="rfr-store")


def _shots_of(outcome: JobOutcome) -> list[Shot | None]:
    """Each stored face's shot (a clip's), or None (a still's)."""
    if outcome.clip is not None:
        return list(outcome.clip.shots)
    return [None] * len(outcome.stored_faces)


def _without_deleted_subjects(session: Session, done: list[JobOutcome]) -> list[JobOutcome]:
    """The batch's outcomes less candidates naming a subject deleted since the search ran (its
    removal from the index follows its commit): they would fail the foreign key and stall the batch.
    The subjects still present are locked FOR SHARE, so a deletion now waits for this commit."""
    tracks = [track for outcome in done if outcome.clip is not None for track in outcome.clip.tracks]
    named = {hit.subject_id for outcome in done for face in outcome.stored_faces for hit in face.candidates}
    named |= {hit.subject_id for track in tracks for hit in track.hits or []}
    gone = deleted_subjects(session, named)
    if not gone:
        return done
    log.warning("subjects %s were deleted while their candidates were being stored: left out", sorted(gone))

    def face(outcome: FaceOutcome) -> FaceOutcome:
        return dataclasses.replace(outcome, candidates=without_subjects(outcome.candidates, gone))

    def clip(outcome: ClipOutcome) -> ClipOutcome:
        return ClipOutcome(
            [
                dataclasses.replace(
                    track,
                    shots=[dataclasses.replace(shot, outcome=face(shot.outcome)) for shot in track.shots],
                    hits=None if track.hits is None else without_subjects(track.hits, gone),
                )
                for track in outcome.tracks
            ]
        )

    return [
        dataclasses.replace(outcome, clip=clip(outcome.clip))
        if outcome.clip is not None
        else dataclasses.replace(outcome, faces=[face(f) for f in outcome.faces or []])
        for outcome in done
    ]


def _stored_tracks(clip_image_id: int, clip: ClipOutcome, face_ids: list[int]) -> list[StoredTrack]:
    """A clip's tracks with their shots' stored face ids (in the order the shots were stored), each
    candidate's best shot named by its face id."""
    tracks, ids = [], iter(face_ids)
    for track in clip.tracks:
        shot_ids = [next(ids) for _ in track.shots]
        hits = None
        if track.hits is not None:
            hits = [dataclasses.replace(hit, best_face_id=shot_ids[hit.best_face_id]) for hit in track.hits]
        tracks.append(StoredTrack(clip_image_id, track.start_s, track.end_s, shot_ids, hits))
    return tracks
