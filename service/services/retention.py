"""Retention (R6): probes without a confirmed match are purged after a configured number of days.

For every submission older than the cut-off, each probe image with no confirmed match is deleted
with its faces, embeddings, candidates, decisions, job and stored file (unless the same bytes are
still used elsewhere); an image with a confirmed match keeps that face (and its decisions) and
loses its other faces. A clip is purged like a still: its file, and its shots' stills with their
faces (a clip with a confirmed match keeps that shot). The purge is written to the audit trail
with counts only: the trail keeps no image and no embedding.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from service.db.image_store import ImageStore
from service.db.models import ProbeFace, ProbePerson, Submission
from service.db.queries import digests_in_use
from service.domain.roles import Principal, Role
from service.errors import InvalidRequest
from service.services import audit
from service.services.review import purged_part, remaining_figures
from service.services.views import PurgeResult

if TYPE_CHECKING:
    from service.services.linking import LinkingService

log = logging.getLogger(__name__)

MIN_RETENTION_DAYS = 1.0
ORPHAN_AGE_S = 6 * 3600.0  # an upload stores its files and commits their rows well within this


def _confirmed(face: ProbeFace) -> bool:
    return face.review_state == "confirmed" and face.review_outcome == "possible_match"


class RetentionService:
    def __init__(
        self, factory: sessionmaker[Session], store: ImageStore, days: float, linking: LinkingService | None = None
    ) -> None:
        self.factory = factory
        self.store = store
        self.days = days
        self.linking = linking  # purged faces leave their unknown groups; empty groups go

    def purge(self, actor: Principal, *, now: datetime | None = None, days: float | None = None) -> PurgeResult:
        """Purge what is older than ``days`` (default: the configured retention), never less than a day:
        a smaller value (``1e-300``) would delete every unreviewed probe, work in progress included."""
        keep_days = self.days if days is None else days
        if not keep_days >= MIN_RETENTION_DAYS:  # also refuses NaN
            raise InvalidRequest(f"a purge keeps at least {MIN_RETENTION_DAYS} day of probes; {days!r} was asked")
        cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
        started = time.time()  # a purged file stored again since (a new upload of its bytes) is kept
        stats = {
            "submissions": 0,
            "images_deleted": 0,
            "faces_deleted": 0,
            "images_kept": 0,
            "files_deleted": 0,
            "persons_deleted": 0,
        }
        digests: list[str] = []
        with self.factory() as session, session.begin():
            if self.linking is not None:
                self.linking.purge_begin(session)
            old = list(session.scalars(select(Submission).where(Submission.created_at < cutoff)))
            for submission in old:
                plan = [
                    (image, [f for f in image.faces if not _confirmed(f)], any(_confirmed(f) for f in image.faces))
                    for image in submission.images
                    if image.status in ("done", "failed")  # still queued or processing: never purge unfinished work
                ]
                stats["images_kept"] += sum(1 for _, _, kept in plan if kept)
                plan = [(image, drop, kept) for image, drop, kept in plan if drop or not kept]
                if not plan:
                    continue
                before = remaining_figures(session, submission.id)
                for image, drop, kept in plan:
                    digests.extend(f.frame_sha256 for f in drop if f.frame_sha256)  # a clip's shots
                    stats["faces_deleted"] += len(drop)
                    if kept:
                        for face in drop:
                            session.delete(face)
                    else:
                        stats["images_deleted"] += 1
                        digests.append(image.sha256)
                        session.delete(image)
                session.flush()
                self._keep_figures(submission, purged_part(before, remaining_figures(session, submission.id)))
                stats["submissions"] += 1
            session.flush()
            if old:
                empty = delete(ProbePerson).where(
                    ProbePerson.submission_id.in_([s.id for s in old]),
                    ~select(ProbeFace.id).where(ProbeFace.person_id == ProbePerson.id).exists(),
                )
                stats["persons_deleted"] = int(session.execute(empty).rowcount)  # type: ignore[attr-defined]
            if self.linking is not None:
                stats |= self.linking.purge_end(session)
            audit.append(
                session, actor, "purge", "retention", "", cutoff=cutoff.isoformat(), retention_days=keep_days, **stats
            )
        with self.factory() as session:
            used = digests_in_use(session, digests)
        stats["files_deleted"] = sum(1 for d in sorted(set(digests) - used) if self.store.delete(d, started))
        stats["orphan_files_deleted"] = self.sweep_orphans()
        return PurgeResult(**stats)

    def sweep_orphans(self, older_than_s: float = ORPHAN_AGE_S) -> int:
        """Remove stored files no row names that are older than ``older_than_s``: an upload that died
        between storing its files and committing their rows (a younger file may be a live upload's)."""
        removed = 0
        cutoff = time.time() - older_than_s
        candidates = list(self.store.stored_before(cutoff))
        with self.factory() as session:
            used = digests_in_use(session, candidates)
        for digest in candidates:
            # Deleted only if still not written since it was listed: a new upload of the same bytes
            # refreshes the file before its rows are committed.
            if digest not in used and self.store.delete(digest, cutoff):
                removed += 1
        if removed:
            log.warning("removed %d stored files that no record names (interrupted uploads)", removed)
        return removed

    @staticmethod
    def _keep_figures(submission: Submission, part: dict[str, int]) -> None:
        """Add what this purge took out to the counts the submission keeps of its purged probes."""
        kept = dict(submission.purged_figures or {})
        submission.purged_figures = {key: int(kept.get(key, 0)) + value for key, value in part.items()}
        submission.purged_at = datetime.now(UTC)


class PeriodicPurge:
    """Runs the retention purge in the service every ``interval_hours`` (and once at start)."""

    ACTOR = Principal(username="service:retention", role=Role.ADMIN, via="service")

    def __init__(self, retention: RetentionService, interval_hours: float) -> None:
        self.retention = retention
        self.interval = interval_hours * 3600
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="rfr-purge", daemon=True)

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.retention.purge(self.ACTOR)
            except Exception:
                log.exception("periodic purge failed")
            self.stop_event.wait(self.interval)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
