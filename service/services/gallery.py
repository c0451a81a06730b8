"""The custody gallery: enrolment, deletion, and keeping the FAISS index in step with the database."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.config import IndexSettings
from service.db.engine import read_session
from service.db.image_store import ImageStore, sha256_bytes
from service.db.models import (
    Candidate,
    CustodyImage,
    FaceTemplate,
    GalleryChange,
    GalleryState,
    PersonCandidate,
    ProbeFace,
    ProbePerson,
    Subject,
)
from service.db.queries import digests_in_use
from service.db.vectors import embedding_from_bytes, embedding_to_bytes
from service.domain.events import TemplateEnrolled
from service.domain.faces import FaceRecord
from service.domain.provenance import SubjectProvenance
from service.domain.roles import Principal
from service.domain.views import (
    FRONT,
    FUSED_TEMPLATE,
    VIEW_TEMPLATE,
    is_front,
    label_view,
    normalise_view,
)
from service.embeddings.pipeline import FacePipeline
from service.embeddings.quality import LOW_QUALITY_SCORE, OFF_ANGLE
from service.errors import InvalidRequest, NotFound, ServiceError
from service.index import FaissGalleryIndex, build_index, chosen_factory, open_or_rebuild
from service.services import audit
from service.services.views import DeletedSubject, SubjectOut

log = logging.getLogger(__name__)

# A custody image may show other people far behind the subject; the subject's face must dominate.
DOMINANT_AREA_RATIO = 2.5


@dataclass(frozen=True, slots=True)
class EnrolOutcome:
    status: str  # enrolled | already_enrolled | rejected
    custody_reference: str
    file_name: str
    subject_id: int | None = None
    template_id: int | None = None
    reason_code: str | None = None
    reason: str | None = None
    quality_reasons: tuple[str, ...] = field(default_factory=tuple)
    view: str | None = None


# What a turned view of a record may be that a front view may not: off the frontal pose (and so
# scored lower overall). A small, blurred, dark or doubtful face is refused in any view.
TURNED_VIEW_REASONS = frozenset({OFF_ANGLE, LOW_QUALITY_SCORE})


def is_turned_face(face: FaceRecord) -> bool:
    """A face flagged only for its pose: acceptable as a turned view of a record."""
    return not face.quality.clear and set(face.quality.reasons) <= TURNED_VIEW_REASONS


def choose_custody_face(
    faces: list[FaceRecord], turned_ok: bool = False
) -> FaceRecord | tuple[str, str, tuple[str, ...]]:
    """The one face to enrol, or (code, message, quality reasons) for a rejection.

    Poor faces (small, blurred people in the background) do not compete with the subject; of
    the faces free of every quality reason (and, with ``turned_ok``, those flagged only for their
    pose) the largest must dominate the others, or the image is ambiguous.
    """
    if not faces:
        return ("no_face", "no face was found in the image", ())

    def area(f: FaceRecord) -> float:
        return f.face.box[2] * f.face.box[3]

    eligible = sorted(
        (f for f in faces if f.quality.clear or (turned_ok and is_turned_face(f))), key=area, reverse=True
    )
    if not eligible:
        largest = max(faces, key=area)
        reasons = largest.quality.reasons
        return ("poor_quality", f"face quality is poor: {', '.join(reasons)}", reasons)
    if len(eligible) > 1 and area(eligible[0]) < DOMINANT_AREA_RATIO * area(eligible[1]):
        return ("several_faces", f"{len(eligible)} clear faces of similar size; a custody image must show one", ())
    return eligible[0]


class GalleryIndexHolder:
    """The in-process FAISS index for the configured pack, reconciled with the database.

    The database is the source of truth. Every gallery change bumps ``gallery_state.version`` in
    the same transaction; a process whose index was built at another version reconciles before
    searching (adds the templates it lacks, removes those deleted), so a CLI import and a running
    service on the same data directory never disagree for long.

    The index's type is ``settings`` (``RFR_INDEX__*``). When the gallery outgrows what an
    approximate index was trained for, or a type that cannot delete in place holds too many removed
    entries, a new index is built from the database on a background thread (searches go on against
    the old one), verified, swapped in and reconciled with whatever changed meanwhile.
    """

    def __init__(
        self,
        directory: Path,
        pack_id: str,
        dim: int,
        factory: sessionmaker[Session],
        settings: IndexSettings | None = None,
    ) -> None:
        self.directory = directory
        self.pack_id = pack_id
        self.dim = dim
        self.factory = factory
        self.settings = settings or IndexSettings()
        self.lock = threading.RLock()
        self.version = -1
        self.index: FaissGalleryIndex
        self.open_status = ""
        self.rebuilder: threading.Thread | None = None
        self.rebuild_status = ""
        self.unsaved = 0  # template changes applied since the index was last saved

    def _db_version(self, session: Session) -> int:
        return int(session.scalar(select(GalleryState.version).where(GalleryState.pack_id == self.pack_id)) or 0)

    def _expected(self) -> tuple[int, int]:
        with read_session(self.factory) as session:
            count, max_id = session.execute(
                select(func.count(FaceTemplate.id), func.max(FaceTemplate.id)).where(
                    FaceTemplate.pack_id == self.pack_id
                )
            ).one()
        return int(count or 0), int(max_id or -1)

    def _embeddings(self, only: set[int] | None = None) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        last = 0
        with read_session(self.factory) as session:
            while True:
                query = (
                    select(FaceTemplate.id, FaceTemplate.embedding)
                    .where(FaceTemplate.pack_id == self.pack_id, FaceTemplate.id > last)
                    .order_by(FaceTemplate.id)
                    .limit(20_000)
                )
                rows = session.execute(query).all()
                if not rows:
                    return
                last = int(rows[-1][0])
                if only is not None:
                    rows = [r for r in rows if int(r[0]) in only]
                if rows:
                    ids = np.array([r[0] for r in rows], dtype=np.int64)
                    vectors = np.stack([embedding_from_bytes(r[1]) for r in rows])
                    yield ids, vectors

    def _sample(self, n: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Up to ``n`` of this pack's templates drawn uniformly at random (training, verification)."""
        with read_session(self.factory) as session:
            rows = session.execute(
                select(FaceTemplate.id, FaceTemplate.embedding)
                .where(FaceTemplate.pack_id == self.pack_id)
                .order_by(func.random())
                .limit(max(1, n))
            ).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.stack([embedding_from_bytes(r[1]) for r in rows]) if rows else np.zeros((0, self.dim), np.float32)
        return ids, vectors

    def _changes(self, since: int, until: int) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
        """The templates added (still there at ``until``) and every id removed after version ``since``
        up to ``until``, from the change log; ``None`` when the log does not reach back to ``since``."""
        with read_session(self.factory) as session:
            logged_from = session.scalar(select(GalleryState.logged_from).where(GalleryState.pack_id == self.pack_id))
            if logged_from is None:  # no change was ever made to this pack
                return (np.zeros(0, np.int64), np.zeros(0, np.int64)) if since == 0 else None
            if since < int(logged_from):
                return None
            rows = session.execute(
                select(GalleryChange.template_id, GalleryChange.added)
                .where(
                    GalleryChange.pack_id == self.pack_id,
                    GalleryChange.version > since,
                    GalleryChange.version <= until,
                )
                .order_by(GalleryChange.version, GalleryChange.id)
            ).all()
        last: dict[int, bool] = {}
        for template_id, added in rows:
            last[int(template_id)] = bool(added)
        removed = sorted({int(t) for t, added in rows if not added})
        return np.array([t for t, a in last.items() if a], np.int64), np.array(removed, np.int64)

    def _embeddings_of(self, ids: NDArray[np.int64]) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        """The stored embeddings of ``ids`` (those that still exist), in batches."""
        wanted = sorted({int(i) for i in ids})
        with read_session(self.factory) as session:
            for start in range(0, len(wanted), 1000):
                rows = session.execute(
                    select(FaceTemplate.id, FaceTemplate.embedding)
                    .where(FaceTemplate.pack_id == self.pack_id, FaceTemplate.id.in_(wanted[start : start + 1000]))
                    .order_by(FaceTemplate.id)
                ).all()
                if rows:
                    yield (
                        np.array([r[0] for r in rows], dtype=np.int64),
                        np.stack([embedding_from_bytes(r[1]) for r in rows]),
                    )

    def open(self) -> str:
        """Load the persisted index, or rebuild it from the database when missing, stale, corrupt or
        of another type than configured."""
        with self.lock:
            with read_session(self.factory) as session:
                version = self._db_version(session)
            self.index, self.open_status = open_or_rebuild(
                self.directory,
                self.pack_id,
                self.dim,
                self._expected,
                lambda: self._embeddings(),
                settings=self.settings,
                sample=self._sample,
                gallery_version=version,
                changes=lambda since: self._changes(since, version),
                embeddings_of=self._embeddings_of,
            )
            self.version = version
            self.unsaved = 0
            log.info("gallery index %s", self.open_status)
            return self.open_status

    def refresh(self) -> None:
        """Reconcile with the database if another process changed the gallery: from the change log
        since this index's version, or (when the log does not reach back) by comparing every id."""
        with self.lock:
            with read_session(self.factory) as session:
                version = self._db_version(session)
            if version == self.version:
                return
            delta = self._changes(self.version, version) if self.version >= 0 else None
            if delta is not None:
                added, removed = delta
                changed = self.index.remove(removed) if removed.size else 0
                missing = added[~np.isin(added, self.index.ids())]
                for ids, vectors in self._embeddings_of(missing) if missing.size else ():
                    self.index.add(ids, vectors)
                    changed += ids.size
            else:
                with read_session(self.factory) as session:
                    db_ids = {
                        int(i)
                        for i in session.scalars(select(FaceTemplate.id).where(FaceTemplate.pack_id == self.pack_id))
                    }
                held = {int(i) for i in self.index.ids()}
                stale = held - db_ids
                absent = db_ids - held
                if stale:
                    self.index.remove(np.array(sorted(stale), dtype=np.int64))
                for ids, vectors in self._embeddings(only=absent) if absent else ():
                    self.index.add(ids, vectors)
                changed = len(stale) + len(absent)
            self.version = version
            if changed:
                self._changed(changed)

    def applied(
        self,
        version: int,
        add: tuple[NDArray[np.int64], NDArray[np.float32]] | None = None,
        remove: NDArray[np.int64] | None = None,
    ) -> None:
        """Apply a change this process just committed at gallery ``version``."""
        with self.lock:
            if self.version != version - 1:
                self.refresh()  # someone else changed the gallery in between: reconcile fully
                return
            changed = 0
            if add is not None and len(add[0]):
                self.index.add(*add)
                changed += len(add[0])
            if remove is not None and len(remove):
                changed += self.index.remove(remove)
            self.version = version
            self._changed(max(changed, 1))

    def _changed(self, changes: int) -> None:
        """Count ``changes`` template changes; save the index once they reach the checkpoint (caller holds the lock)."""
        self.unsaved += changes
        if self.unsaved >= max(1.0, self.settings.checkpoint_fraction * self.index.count):
            self.save()
        self._upkeep()

    def save(self) -> None:
        """Write the index at this process's gallery version (the next start loads it and
        reconciles only what changed after it)."""
        with self.lock:
            self.index.save(gallery_version=self.version)
            self.unsaved = 0

    def _upkeep(self) -> None:
        """Start a background rebuild when the index asks for one (retrain, compaction, Flat outgrown)."""
        if self.rebuilder is not None and self.rebuilder.is_alive():
            return
        count = self.index.count
        reason = self.index.rebuild_reason(count)
        wanted = chosen_factory(self.settings, self.dim, count)
        if reason is None and wanted != self.index.factory:
            reason = f"index_type: {count} templates are held in {wanted}, not {self.index.factory}"
        if reason is None:
            return
        log.info("gallery index: rebuilding in the background (%s)", reason)
        self.rebuilder = threading.Thread(
            target=self._rebuild, args=(reason, wanted), name="gallery-index-rebuild", daemon=True
        )
        self.rebuilder.start()

    def _rebuild(self, reason: str, factory: str) -> None:
        try:
            with read_session(self.factory) as session:
                version = self._db_version(session)
            fresh, verified = build_index(
                self.directory,
                self.pack_id,
                self.dim,
                self._expected,
                lambda: self._embeddings(),
                factory=factory,
                settings=self.settings,
                sample=self._sample,
            )
            with self.lock:
                self.index = fresh
                self.version = version
                self.save()
                self.refresh()  # whatever changed while it was built
            self.rebuild_status = f"rebuilt: {reason}; {verified}"
            log.info("gallery index %s", self.rebuild_status)
        except Exception as exc:  # the old index goes on serving; the next change tries again
            self.rebuild_status = f"rebuild failed: {reason}: {exc}"
            log.exception("gallery index rebuild failed (%s)", reason)

    def search(self, queries: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        self.refresh()
        with self.lock:
            return self.index.search(queries, k)


def refresh_fused_template(
    session: Session, subject_id: int, pack_id: str
) -> tuple[list[int], list[tuple[int, NDArray[np.float32]]]]:
    """Replace the subject's fused template by the normalised mean of its view templates (none for
    a single view); returns the template ids removed and the (id, embedding) added."""
    rows = session.execute(
        select(FaceTemplate.id, FaceTemplate.kind, FaceTemplate.embedding).where(
            FaceTemplate.subject_id == subject_id, FaceTemplate.pack_id == pack_id
        )
    ).all()
    removed = [int(i) for i, kind, _ in rows if kind == FUSED_TEMPLATE]
    if removed:
        session.execute(delete(FaceTemplate).where(FaceTemplate.id.in_(removed)))
    views = [embedding_from_bytes(blob) for _, kind, blob in rows if kind == VIEW_TEMPLATE]
    if len(views) < 2:
        return removed, []
    mean = np.mean(np.stack(views), axis=0)
    fused_embedding = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    fused = FaceTemplate(
        subject_id=subject_id,
        custody_image_id=None,
        kind=FUSED_TEMPLATE,
        pack_id=pack_id,
        dim=int(fused_embedding.shape[0]),
        embedding=embedding_to_bytes(fused_embedding),
        quality_score=1.0,
        box=[],
    )
    session.add(fused)
    session.flush()
    return removed, [(int(fused.id), fused_embedding)]


def bump_version(session: Session, pack_id: str, *, added: Sequence[int] = (), removed: Sequence[int] = ()) -> int:
    """Bump the pack's gallery version and log the templates this change added and removed."""
    state = session.get(GalleryState, pack_id, with_for_update=True)
    if state is None:
        state = GalleryState(pack_id=pack_id, version=0, logged_from=0)
        session.add(state)
    state.version = int(state.version) + 1
    version = int(state.version)
    changes = [{"template_id": int(t), "added": False} for t in removed]
    changes += [{"template_id": int(t), "added": True} for t in added]
    if changes:
        session.execute(
            insert(GalleryChange), [{"pack_id": pack_id, "version": version, **change} for change in changes]
        )
    session.flush()
    return version


EnrolledHandler = Callable[[TemplateEnrolled], object]


class GalleryService:
    def __init__(
        self,
        factory: sessionmaker[Session],
        pipeline: FacePipeline,
        store: ImageStore,
        holder: GalleryIndexHolder,
        on_enrolled: Sequence[EnrolledHandler] = (),
    ) -> None:
        self.factory = factory
        self.pipeline = pipeline
        self.store = store
        self.holder = holder
        # Called after each enrolment: cold-case re-search of unknown faces against the new template.
        self.on_enrolled = on_enrolled

    def enrol(
        self,
        actor: Principal,
        custody_reference: str,
        data: bytes,
        file_name: str,
        provenance: SubjectProvenance | None = None,
        *,
        refuse_unreadable: bool = False,
        view: str | None = None,
    ) -> EnrolOutcome:
        """Enrol one custody image as a view of its subject's record; a re-run with the same image is
        a no-op (resumable imports).

        ``view`` names it (``service.domain.views``); unnamed, it is read from the face's yaw. A
        turned view (a face refused only for its pose) is enrolled beside a front view of the same
        record, never alone. An unreadable file is a rejected outcome, or with
        ``refuse_unreadable`` its typed error.
        """
        reference = custody_reference.strip()
        if not reference:
            raise InvalidRequest("custody_reference is required")
        given = normalise_view(view)
        digest = sha256_bytes(data)
        with self.factory() as session:
            existing = session.execute(
                select(CustodyImage.subject_id)
                .join(Subject)
                .where(Subject.custody_reference == reference, CustodyImage.sha256 == digest)
            ).first()
        if existing is not None:
            return EnrolOutcome("already_enrolled", reference, file_name, subject_id=int(existing[0]))
        try:
            try:
                still = self.pipeline.decode_still(data)
            except ServiceError as exc:
                if refuse_unreadable:
                    raise type(exc)(f"{file_name}: {exc.message}") from exc
                raise
            analysed = self.pipeline.analyse_still(still)
        except ServiceError as exc:
            return EnrolOutcome("rejected", reference, file_name, reason_code=exc.code, reason=exc.message)
        choice = choose_custody_face(analysed.faces, turned_ok=given is None or not is_front(given))
        if isinstance(choice, tuple):
            code, message, reasons = choice
            return EnrolOutcome(
                "rejected", reference, file_name, reason_code=code, reason=message, quality_reasons=reasons
            )
        turned = not choice.quality.clear
        label = label_view(given, turned, choice.quality.measures.get("yaw_deg", 0.0))
        if turned:
            with read_session(self.factory) as session:
                front = session.scalar(
                    select(CustodyImage.id)
                    .join(Subject)
                    .where(Subject.custody_reference == reference, CustodyImage.view == FRONT)
                    .limit(1)
                )
            if front is None:
                return EnrolOutcome(
                    "rejected",
                    reference,
                    file_name,
                    reason_code="no_front_view",
                    reason=f"a turned view ({label}) is enrolled only beside a front view of the same record",
                    quality_reasons=choice.quality.reasons,
                )
        self.store.put(data)
        with self.factory() as session, session.begin():
            subject = session.scalar(select(Subject).where(Subject.custody_reference == reference))
            if subject is None:
                p = provenance or SubjectProvenance()
                subject = Subject(
                    custody_reference=reference,
                    source=p.source,
                    lawful_basis=p.lawful_basis,
                    conviction_status=p.conviction_status,
                    under_18=p.under_18,
                )
                session.add(subject)
                session.flush()
            image = CustodyImage(
                subject_id=subject.id,
                sha256=digest,
                file_name=file_name[:255],
                view=label,
                width=analysed.width,
                height=analysed.height,
            )
            session.add(image)
            session.flush()
            template = FaceTemplate(
                subject_id=subject.id,
                custody_image_id=image.id,
                pack_id=choice.pack_id,
                dim=int(choice.embedding.shape[0]),
                embedding=embedding_to_bytes(choice.embedding),
                quality_score=choice.quality.score,
                box=[round(v, 1) for v in choice.face.box],
                landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in choice.face.landmarks],
            )
            session.add(template)
            session.flush()
            removed, fused = refresh_fused_template(session, int(subject.id), choice.pack_id)
            version = bump_version(
                session, choice.pack_id, added=[int(template.id), *(i for i, _ in fused)], removed=removed
            )
            subject_id, template_id = int(subject.id), int(template.id)
            audit.append(
                session,
                actor,
                "gallery_enrolled",
                "subject",
                subject_id,
                template_id=template_id,
                image_sha256=digest,
                pack=choice.pack_id,
                quality=round(choice.quality.score, 3),
                view=label,
            )
        added = [(template_id, choice.embedding), *fused]
        self.holder.applied(
            version,
            add=(np.array([i for i, _ in added], np.int64), np.stack([e for _, e in added])),
            remove=np.array(removed, np.int64),
        )
        event = TemplateEnrolled(subject_id, template_id, choice.pack_id, choice.embedding, actor)
        for handler in self.on_enrolled:
            handler(event)
        return EnrolOutcome(
            "enrolled", reference, file_name, subject_id=subject_id, template_id=template_id, view=label
        )

    def delete_subject(self, actor: Principal, subject_id: int, reason: str = "") -> DeletedSubject:
        """Remove a subject's records, stored files, templates and index entries at once (R7)."""
        with self.factory() as session, session.begin():
            if session.get(Subject, subject_id, with_for_update=True) is None:
                raise NotFound(f"subject {subject_id} not found")
            template_ids = list(session.scalars(select(FaceTemplate.id).where(FaceTemplate.subject_id == subject_id)))
            digests = list(session.scalars(select(CustodyImage.sha256).where(CustodyImage.subject_id == subject_id)))
            # Candidates naming the subject go with it (FK cascade); so do its templates and images.
            # A decision that chose one of them keeps its state and its history, but no longer points
            # at a candidate that is gone: the faces and persons concerned are named in the trail.
            faces = self._forget_chosen(session, ProbeFace, Candidate, subject_id)
            persons = self._forget_chosen(session, ProbePerson, PersonCandidate, subject_id)
            session.execute(delete(FaceTemplate).where(FaceTemplate.subject_id == subject_id))
            session.execute(delete(CustodyImage).where(CustodyImage.subject_id == subject_id))
            session.execute(delete(Subject).where(Subject.id == subject_id))
            version = bump_version(session, self.holder.pack_id, removed=template_ids)
            audit.append(
                session,
                actor,
                "subject_deleted",
                "subject",
                subject_id,
                templates=len(template_ids),
                images=len(digests),
                reason=reason,
                decided_faces=faces,
                decided_persons=persons,
            )
        self.holder.applied(version, remove=np.array(template_ids, dtype=np.int64))
        with self.factory() as session:
            used = digests_in_use(session, digests)
        removed_files = sum(1 for digest in sorted(set(digests) - used) if self.store.delete(digest))
        return DeletedSubject(
            subject_id=subject_id, templates=len(template_ids), images=len(digests), files=removed_files
        )

    @staticmethod
    def _forget_chosen(
        session: Session,
        decided: type[ProbeFace] | type[ProbePerson],
        candidates: type[Candidate] | type[PersonCandidate],
        subject_id: int,
    ) -> list[int]:
        """The ids of the faces (or persons) whose decision chose a candidate naming ``subject_id``,
        their pointer to it cleared."""
        chosen = select(candidates.id).where(candidates.subject_id == subject_id)
        ids = list(session.scalars(select(decided.id).where(decided.review_candidate_id.in_(chosen))))
        if ids:
            session.execute(update(decided).where(decided.id.in_(ids)).values(review_candidate_id=None))
        return ids

    def save_index(self) -> None:
        self.holder.save()

    def subjects(self, custody_reference: str | None = None, limit: int = 100, offset: int = 0) -> list[SubjectOut]:
        """Gallery records with their provenance and counts, in id order."""
        with read_session(self.factory) as session:
            query = select(Subject).order_by(Subject.id).limit(limit).offset(offset)
            if custody_reference:
                query = query.where(Subject.custody_reference == custody_reference)
            return [_subject_record(session, s) for s in session.scalars(query).all()]

    def subject(self, subject_id: int) -> SubjectOut:
        """One record with its provenance, counts and custody image ids (404 if unknown)."""
        with read_session(self.factory) as session:
            subject = session.get(Subject, subject_id)
            if subject is None:
                raise NotFound(f"subject {subject_id} not found")
            return _subject_record(session, subject)


def _subject_record(session: Session, subject: Subject) -> SubjectOut:
    images = session.execute(
        select(CustodyImage.id, CustodyImage.view, CustodyImage.created_at)
        .where(CustodyImage.subject_id == subject.id)
        .order_by(CustodyImage.id)
    ).all()
    image_ids = [int(i) for i, _, _ in images]
    templates = session.scalar(select(func.count()).where(FaceTemplate.subject_id == subject.id))
    return SubjectOut(
        id=subject.id,
        custody_reference=subject.custody_reference,
        source=subject.source,
        lawful_basis=subject.lawful_basis,
        conviction_status=subject.conviction_status,
        under_18=subject.under_18,
        enrolled_at=subject.enrolled_at,
        images=len(image_ids),
        image_ids=image_ids,
        views=[str(v) for _, v, _ in images],
        image_dates=[at for _, _, at in images],
        templates=int(templates or 0),
    )
