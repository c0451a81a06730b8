"""The service's own state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.deps import RuntimeDep
from service.api.errors import ERRORS
from service.api.schemas import Health

router = APIRouter(responses=ERRORS)


@router.get("/health", response_model=Health, tags=["service"])
def health(rt: RuntimeDep) -> dict[str, Any]:
    return {
        "status": "ok",
        "pack_id": rt.pipeline.pack_id,
        "gallery_templates": int(rt.holder.index.count),
        "index": rt.holder.open_status,
    }
