"""The one composition root: the only module that knows which concrete classes make the service.

Two tiers, so a command pays only for what it uses:

* ``Storage.open(settings)`` — the database (migrated) with its audit anchor (the key and the
  checkpoint file outside it), the image store, the pack's manifest and
  every use case that needs no model and no index: users, audit trail, review, reports,
  disclosure, audited images, submissions' reads and uploads, linking, retention. It never
  imports onnxruntime or faiss, and each use case is built (and its modules imported) the first
  time it is used, so ``rfr users list`` loads the users service alone.
* ``Runtime.build(settings)`` — all of that, plus the face pipeline (ONNX sessions), the FAISS
  gallery index, enrolment, search and the job worker. The HTTP app, ``rfr serve``, ``rfr
  submit``, ``rfr gallery import``, ``rfr search`` and the benchmarks use it.

Nothing is built at import time.
"""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from service.config import Settings
from service.db.engine import make_engine, migrate, session_factory
from service.db.image_store import ImageStore, LocalImageStore, SharedImageStore
from service.embeddings.packs import PackManifest, load_manifest

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from service.embeddings.decode import DecodedStill
    from service.embeddings.pipeline import FacePipeline
    from service.services.audit import AuditTrail
    from service.services.gallery import GalleryIndexHolder, GalleryService
    from service.services.linking import LinkingService
    from service.services.media import MediaService
    from service.services.persons import PersonBuilder
    from service.services.retention import RetentionService
    from service.services.review import ReviewService
    from service.services.search import GallerySearcher, SearchService
    from service.services.submissions import ClipProber, Decoder, SubmissionService
    from service.services.users import UserService
    from service.services.video import ClipProcessor
    from service.services.worker import JobWorker
    from service.video.clips import ClipInfo


def open_store(settings: Settings) -> ImageStore:
    """The shared folder when ``RFR_STORE__PATH`` names one, else the data directory's own."""
    if settings.store.path is not None:
        return SharedImageStore(settings.store.path)
    return LocalImageStore(settings.images_dir)


def _names_stored_files(factory: sessionmaker[Session]) -> bool:
    from service.db.queries import names_stored_files

    with factory() as session:
        return names_stored_files(session)


class Storage:
    """The storage-only tier: no model is loaded and no index opened."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        factory: sessionmaker[Session],
        store: ImageStore,
        manifest: PackManifest,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.factory = factory
        self.store = store
        self.manifest = manifest

    @classmethod
    def open(cls, settings: Settings) -> Storage:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        migrate(engine)
        manifest = load_manifest(settings.models_dir, settings.pack)
        factory = session_factory(engine)
        # Every session MACs and checkpoints its audit events with the key outside the database.
        from service.services.audit import open_anchor

        try:
            open_anchor(factory, settings.audit_key_file, settings.audit_checkpoint_file)
        except BaseException:
            engine.dispose()
            raise
        store = open_store(settings)
        try:
            store.ensure_ready(lambda: _names_stored_files(factory))
        except BaseException:
            engine.dispose()
            raise
        store.sweep_incoming()  # uploads staged by a process (of this host) that died mid-request
        return cls(settings, engine, factory, store, manifest)

    @property
    def pack_id(self) -> str:
        return self.manifest.id

    def check_store(self) -> None:
        """Refuse (``ConfigurationError``) an image store that lacks the newest files the database
        names: a worker host whose ``RFR_STORE__PATH`` is unset or wrong would fail every job."""
        from service.db.queries import newest_stored_digests
        from service.errors import ConfigurationError

        with self.factory() as session:
            missing = [d for d in newest_stored_digests(session) if not self.store.exists(d)]
        if missing:
            raise ConfigurationError(
                f"the image store {self.store.root} lacks the newest images the database names ({missing[0][:12]}...):"
                " every host must see the one store (RFR_STORE__PATH)"
            )

    @cached_property
    def decode_slots(self) -> threading.Semaphore:
        """The stills the API may decode at once (its searches and upload checks): the process's
        bound on decoded pixels in memory (``ImageSettings.max_concurrent_decodes``)."""
        return threading.BoundedSemaphore(self.settings.images.max_concurrent_decodes)

    @cached_property
    def decode(self) -> Decoder:
        """A still's working-size pixels, within the pixel limit (the caller holds a decode slot)."""
        from service.embeddings.decode import decode_still

        images = self.settings.images

        def decode(source: bytes | Path) -> DecodedStill:
            return decode_still(source, max_pixels=images.max_pixels, max_side=images.work_max_side)

        return decode

    @cached_property
    def users(self) -> UserService:
        from service.services.users import UserService

        return UserService(self.factory, self.settings.auth.session_hours)

    @cached_property
    def audit(self) -> AuditTrail:
        from service.services.audit import AuditTrail

        return AuditTrail(self.factory)

    @cached_property
    def linking(self) -> LinkingService:
        from service.services.linking import LinkingService

        return LinkingService.from_settings(self.settings, self.factory, self.manifest)

    @cached_property
    def review(self) -> ReviewService:
        from service.services.review import ReviewService

        retention = self.settings.retention
        return ReviewService(
            self.factory,
            on_decided=[self.linking.review_decided],
            retention_days=retention.days if retention.enabled else None,
        )

    @cached_property
    def submissions(self) -> SubmissionService:
        from service.services.submissions import SubmissionService, UploadLimits

        limits = UploadLimits(self.settings.images.max_bytes, self.settings.video.max_bytes)
        return SubmissionService(
            self.factory, self.store, self.decode, self.probe_clip, self.pack_id, limits, self.decode_slots
        )

    @cached_property
    def probe_clip(self) -> ClipProber:
        video = self.settings.video

        def probe(source: bytes | Path) -> ClipInfo:
            from service.video.clips import ClipLimits, probe_clip  # PyAV, only once a clip arrives

            return probe_clip(source, ClipLimits(video.max_duration_s, video.max_frame_pixels))

        return probe

    @cached_property
    def media(self) -> MediaService:
        from service.services.media import MediaService

        return MediaService(self.factory, self.store, self.decode, self.decode_slots)

    @cached_property
    def retention(self) -> RetentionService:
        from service.services.retention import RetentionService

        return RetentionService(self.factory, self.store, self.settings.retention.days, linking=self.linking)

    def close(self) -> None:
        self.engine.dispose()


class Runtime(Storage):
    """Everything: the storage tier plus the model, the gallery index, enrolment, search and the worker."""

    pipeline: FacePipeline
    holder: GalleryIndexHolder

    @classmethod
    def build(cls, settings: Settings, pipeline: FacePipeline | None = None) -> Runtime:
        """Wire every part; ``pipeline`` lets a caller share one set of ONNX sessions."""
        from service.embeddings.pipeline import FacePipeline
        from service.index import configure_faiss_runtime
        from service.services.gallery import GalleryIndexHolder

        runtime = cls(**vars(Storage.open(settings)))
        runtime.pipeline = pipeline or FacePipeline(settings, runtime.manifest)
        configure_faiss_runtime(dim=runtime.manifest.embedding_dim)
        runtime.holder = GalleryIndexHolder(
            settings.index_dir, runtime.pack_id, runtime.manifest.embedding_dim, runtime.factory, settings.index
        )
        runtime.holder.open()
        return runtime

    @cached_property
    def gallery(self) -> GalleryService:
        from service.services.gallery import GalleryService

        return GalleryService(
            self.factory, self.pipeline, self.store, self.holder, on_enrolled=[self.linking.template_enrolled]
        )

    @cached_property
    def searcher(self) -> GallerySearcher:
        from service.services.search import GallerySearcher

        search = self.settings.search
        return GallerySearcher(
            self.holder, self.factory, self.manifest.operating_threshold, search.top_k, search.oversample
        )

    @cached_property
    def search(self) -> SearchService:
        from service.services.search import SearchService

        return SearchService(self.pipeline, self.searcher, self.factory, self.decode_slots)

    @cached_property
    def persons(self) -> PersonBuilder:
        from service.domain.persons import Fusion
        from service.services.persons import PersonBuilder

        settings = self.settings.persons
        return PersonBuilder(
            self.factory,
            self.searcher,
            Fusion(settings.fusion),
            self.manifest.fused_threshold,
            settings.group_threshold,
            self.settings.search.top_k,
        )

    @cached_property
    def clips(self) -> ClipProcessor:
        from service.services.video import ClipProcessor

        return ClipProcessor(self.factory, self.pipeline, self.searcher, self.persons, self.store, self.settings.video)

    @cached_property
    def worker(self) -> JobWorker:
        from service.services.worker import JobWorker

        return JobWorker(
            self.factory,
            self.pipeline,
            self.searcher,
            self.store,
            self.settings.worker,
            linker=self.linking,
            persons=self.persons,
            clips=self.clips,
        )

    def close(self) -> None:
        if "worker" in self.__dict__:
            self.worker.stop()
        super().close()
