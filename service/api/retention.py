"""Retention (R6): run the purge now (it also runs periodically in the service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import Allowed, RuntimeDep
from service.api.errors import ERRORS
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.errors import InvalidRequest
from service.services.views import PurgeResult

router = APIRouter(responses=ERRORS, tags=["retention"])


@router.post("/retention/purge", response_model=PurgeResult)
def purge(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.PURGE)],
    days: Annotated[float | None, Query(ge=1, description="at least one day")] = None,
) -> PurgeResult:
    """Run the retention purge now (it also runs periodically in the service)."""
    if days is not None and days > 3650:
        raise InvalidRequest("days must be at most 3650")
    return rt.retention.purge(actor, days=days)
