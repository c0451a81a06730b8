"""The application: ``Runtime`` wires the concrete parts; ``create_app`` serves them over HTTP.

Nothing is built at import time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.db.engine import make_engine, migrate, session_factory
from service.db.image_store import ImageStore
from service.domain.roles import Principal, Role
from service.embeddings.pipeline import FacePipeline
from service.index import configure_faiss_runtime
from service.services.gallery import GalleryIndexHolder, GalleryService
from service.services.linking import LinkingService
from service.services.retention import RetentionService
from service.services.review import ReviewService
from service.services.search import GallerySearcher
from service.services.submissions import SubmissionService
from service.services.users import UserService
from service.services.worker import JobWorker

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    pipeline: FacePipeline
    store: ImageStore
    holder: GalleryIndexHolder
    gallery: GalleryService
    searcher: GallerySearcher
    submissions: SubmissionService
    worker: JobWorker
    users: UserService
    review: ReviewService
    retention: RetentionService
    linking: LinkingService

    @classmethod
    def build(cls, settings: Settings, pipeline: FacePipeline | None = None) -> Runtime:
        """Wire every part; ``pipeline`` lets a caller share one set of ONNX sessions."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        migrate(engine)
        factory = session_factory(engine)
        pipeline = pipeline or FacePipeline.from_settings(settings)
        configure_faiss_runtime(dim=pipeline.manifest.embedding_dim)
        store = ImageStore(settings.images_dir)
        holder = GalleryIndexHolder(settings.index_dir, pipeline.pack_id, pipeline.manifest.embedding_dim, factory)
        holder.open()
        searcher = GallerySearcher(
            holder, factory, pipeline.manifest.operating_threshold, settings.search.top_k, settings.search.oversample
        )
        linking = LinkingService.from_settings(settings, factory, pipeline.manifest)
        return cls(
            settings=settings,
            engine=engine,
            factory=factory,
            pipeline=pipeline,
            store=store,
            holder=holder,
            gallery=GalleryService(factory, pipeline, store, holder, on_enrolled=linking.cold_case),
            searcher=searcher,
            submissions=SubmissionService(factory, pipeline, store, settings.images.max_bytes),
            worker=JobWorker(factory, pipeline, searcher, store, settings.worker, linker=linking),
            users=UserService(factory, settings.auth.session_hours),
            review=ReviewService(factory, on_decided=linking.after_review),
            retention=RetentionService(factory, store, settings.retention.days, linking=linking),
            linking=linking,
        )

    def close(self) -> None:
        self.worker.stop()
        self.engine.dispose()


class PeriodicPurge:
    """Runs the retention purge in the service every ``purge_interval_hours`` (and once at start)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="rfr-purge", daemon=True)

    def _loop(self) -> None:
        interval = self.runtime.settings.retention.purge_interval_hours * 3600
        service_actor = Principal(username="service:retention", role=Role.ADMIN, via="service")
        while not self.stop_event.is_set():
            try:
                self.runtime.retention.purge(service_actor)
            except Exception:
                log.exception("periodic purge failed")
            self.stop_event.wait(interval)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    from service.api.errors import install_error_handlers
    from service.api.linking import router as linking_router
    from service.api.people import router as people_router
    from service.api.review import router as review_router
    from service.api.routes import router
    from service.web.pages import install as install_web

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.build(settings or Settings())
        app.state.runtime = rt
        if rt.settings.worker.enabled:
            rt.worker.start()
        purge = PeriodicPurge(rt) if rt.settings.retention.enabled and runtime is None else None
        if purge is not None:
            purge.start()
        if rt.users.count() == 0:
            log.warning("no user accounts yet: create the first admin with 'rfr users create NAME --role admin'")
        try:
            yield
        finally:
            if purge is not None:
                purge.stop()
            rt.worker.stop()
            if runtime is None:
                rt.close()

    app = FastAPI(
        title="Retail-crime retrospective face search",
        version="0.1.0",
        description=(
            "Search retailers' CCTV stills against the custody-image gallery. Every candidate is an "
            "investigative lead for a trained reviewer, never an identification."
        ),
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(people_router)
    app.include_router(review_router)
    app.include_router(linking_router)
    install_web(app)
    return app
