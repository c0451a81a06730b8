"""The one-off synchronous search of one still."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from service.api.deps import Allowed, RuntimeDep, read_upload
from service.api.errors import ERRORS
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.services.views import SearchResult

router = APIRouter(responses=ERRORS, tags=["search"])


@router.post("/search", response_model=SearchResult)
def search(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.SEARCH)],
    file: Annotated[UploadFile, File(description="one still")],
    case_reference: Annotated[str, Form(min_length=1, max_length=128)],
    purpose: Annotated[str, Form(min_length=1, max_length=2000)],
    search_poor_faces: Annotated[bool, Form()] = False,
    threshold: Annotated[
        float | None, Form(ge=0.0, le=1.0, description="below the pack's threshold needs the confirmer role")
    ] = None,
    override_reason: Annotated[str, Form(max_length=2000)] = "",
) -> SearchResult:
    """Search one still synchronously: every face, its quality, and its candidates (audited)."""
    data = read_upload(file, rt.settings.images.max_bytes)
    return rt.search.search_still(actor, data, case_reference, purpose, search_poor_faces, threshold, override_reason)
