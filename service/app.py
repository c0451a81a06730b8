"""``create_app``: the HTTP service (API routers and reviewer pages) over a ``Runtime``.

FastAPI wiring only; the parts come from ``service.runtime`` and nothing is built at import time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.formparsers import MultiPartParser

from service.api import audit, gallery, health, linking, media, retention, review, search, submissions, users
from service.api.errors import document_parse_errors, install_error_handlers
from service.api.limits import RequestSizeLimit
from service.api.security import SecurityMiddleware
from service.config import Settings
from service.runtime import Runtime
from service.services.retention import PeriodicPurge
from service.web.pages import install as install_web

log = logging.getLogger(__name__)

ROUTERS = (health, users, gallery, submissions, search, review, media, audit, retention, linking)
# An uploaded file past this many bytes is spooled to a temporary file by the form parser (Starlette's
# default is 1 MiB): a request of many small files then holds at most this much of each in memory.
SPOOL_MAX_BYTES = 64 * 1024


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The app; it builds (and closes) its own runtime unless given one, which it then leaves open."""
    config = runtime.settings if runtime is not None else (settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.build(config)
        app.state.runtime = rt
        if rt.settings.worker.enabled:
            rt.worker.start()
        purge = None
        if rt.settings.retention.enabled and runtime is None:
            purge = PeriodicPurge(rt.retention, rt.settings.retention.purge_interval_hours)
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

    # /docs and /redoc from assets served by the service itself (Swagger UI and ReDoc bundled in the
    # MIT fastapi-offline wheel), never from a public CDN: a police network may not reach one.
    app: FastAPI = FastAPIOffline(
        title="Retail-crime retrospective face search",
        version="0.1.0",
        description=(
            "Search retailers' CCTV stills against the custody-image gallery. Every candidate is an "
            "investigative lead for a trained reviewer, never an identification."
        ),
        lifespan=lifespan,
    )
    # Added before the error handlers' request-id middleware, so it runs inside it: that middleware
    # reads the body in a task group, which would wrap the cap's 413 in an exception group.
    app.add_middleware(RequestSizeLimit, limit=lambda: config.images.max_request_bytes)
    MultiPartParser.spool_max_size = SPOOL_MAX_BYTES
    install_error_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    install_web(app)
    document_parse_errors(app)
    # Outermost, so even an error answered by a handler above gets the headers.
    app.add_middleware(SecurityMiddleware, allowed_origins=config.auth.allowed_origins)
    return app
