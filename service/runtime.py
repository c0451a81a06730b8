"""The one composition root: the only module that knows which concrete classes make the service.

Two tiers, so a command pays only for what it uses:

* ``Storage.open(settings)`` — the database (migrated), the image store, the pack's manifest and
  every use case that needs no model and no index: users, audit trail, review, reports,
  disclosure, audited images, submissions' reads and uploads, linking, retention. It never
  imports onnxruntime or faiss (``rfr users list`` opens in well under a second).
* ``Runtime.build(settings)`` — all of that, plus the face pipeline (ONNX sessions), the FAISS
  gallery index, enrolment, search and the job worker. The HTTP app, ``rfr serve``, ``rfr
  submit``, ``rfr gallery import``, ``rfr search`` and the benchmarks use it.

Nothing is built at import time; the full tier's modules are imported only when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.db.engine import make_engine, migrate, session_factory
from service.db.image_store import ImageStore
from service.embeddings.decode import decode_image
from service.embeddings.packs import PackManifest, load_manifest
from service.services.audit import AuditTrail
from service.services.linking import LinkingService
from service.services.media import MediaService
from service.services.retention import RetentionService
from service.services.review import ReviewService
from service.services.submissions import SubmissionService
from service.services.users import UserService

if TYPE_CHECKING:
    from service.embeddings.pipeline import FacePipeline
    from service.services.gallery import GalleryIndexHolder, GalleryService
    from service.services.search import GallerySearcher, SearchService
    from service.services.worker import JobWorker


@dataclass(kw_only=True)
class Storage:
    """The storage-only tier: no model is loaded and no index opened."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: ImageStore
    manifest: PackManifest
    users: UserService
    audit: AuditTrail
    linking: LinkingService
    review: ReviewService
    submissions: SubmissionService
    media: MediaService
    retention: RetentionService

    @classmethod
    def open(cls, settings: Settings) -> Storage:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        migrate(engine)
        factory = session_factory(engine)
        store = ImageStore(settings.images_dir)
        manifest = load_manifest(settings.models_dir, settings.pack)
        decode = partial(decode_image, max_pixels=settings.images.max_pixels)
        linking = LinkingService.from_settings(settings, factory, manifest)
        return Storage(
            settings=settings,
            engine=engine,
            factory=factory,
            store=store,
            manifest=manifest,
            users=UserService(factory, settings.auth.session_hours),
            audit=AuditTrail(factory),
            linking=linking,
            review=ReviewService(factory, on_decided=[linking.review_decided]),
            submissions=SubmissionService(factory, store, decode, manifest.id, settings.images.max_bytes),
            media=MediaService(factory, store, decode),
            retention=RetentionService(factory, store, settings.retention.days, linking=linking),
        )

    @property
    def pack_id(self) -> str:
        return self.manifest.id

    def close(self) -> None:
        self.engine.dispose()


@dataclass(kw_only=True)
class Runtime(Storage):
    """Everything: the storage tier plus the model, the gallery index, enrolment, search and the worker."""

    pipeline: FacePipeline
    holder: GalleryIndexHolder
    gallery: GalleryService
    searcher: GallerySearcher
    search: SearchService
    worker: JobWorker

    @classmethod
    def build(cls, settings: Settings, pipeline: FacePipeline | None = None) -> Runtime:
        """Wire every part; ``pipeline`` lets a caller share one set of ONNX sessions."""
        from service.embeddings.pipeline import FacePipeline
        from service.index import configure_faiss_runtime
        from service.services.gallery import GalleryIndexHolder, GalleryService
        from service.services.search import GallerySearcher, SearchService
        from service.services.worker import JobWorker

        storage = Storage.open(settings)
        pipeline = pipeline or FacePipeline(settings, storage.manifest)
        configure_faiss_runtime(dim=pipeline.manifest.embedding_dim)
        holder = GalleryIndexHolder(
            settings.index_dir, pipeline.pack_id, pipeline.manifest.embedding_dim, storage.factory
        )
        holder.open()
        searcher = GallerySearcher(
            holder,
            storage.factory,
            pipeline.manifest.operating_threshold,
            settings.search.top_k,
            settings.search.oversample,
        )
        return cls(
            **{f.name: getattr(storage, f.name) for f in fields(Storage)},
            pipeline=pipeline,
            holder=holder,
            gallery=GalleryService(
                storage.factory, pipeline, storage.store, holder, on_enrolled=[storage.linking.template_enrolled]
            ),
            searcher=searcher,
            search=SearchService(pipeline, searcher, storage.factory),
            worker=JobWorker(
                storage.factory, pipeline, searcher, storage.store, settings.worker, linker=storage.linking
            ),
        )

    def close(self) -> None:
        self.worker.stop()
        super().close()
