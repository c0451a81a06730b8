"""Images for reviewers: served only to those allowed, never cached, every view audited (R1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from service.api.deps import Allowed, RuntimeDep
from service.api.errors import ERRORS
from service.api.schemas import Id
from service.api.security import NO_STORE
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.services.media import ClipFile, Media

router = APIRouter(responses=ERRORS, tags=["images"])


def image_response(media: Media) -> Response:
    """An image shown inline with its real content type, never cached."""
    return Response(media.data, media_type=media.media_type, headers=NO_STORE | {"Content-Disposition": "inline"})


def first_range(request: Request) -> bool:
    """Whether a request for a clip starts a view (no byte range, or one from the start): a player's
    later ranges of the same view are not audited again."""
    wanted = request.headers.get("range", "").replace(" ", "")
    return not wanted or wanted.startswith("bytes=0-")


def clip_response(clip: ClipFile) -> FileResponse:
    """A clip played inline with its real content type, never cached; byte ranges are answered."""
    return FileResponse(clip.path, media_type=clip.media_type, headers=NO_STORE | {"Content-Disposition": "inline"})


@router.get("/probe-images/{image_id}/image", response_class=Response)
def probe_image(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.READ_OWN_SUBMISSIONS, P.READ_ALL_SUBMISSIONS)],
    image_id: Id,
) -> Response:
    """The stored still (signed-in, authorised users only; never cached; the view is audited)."""
    return image_response(rt.media.probe_image(actor, image_id))


RANGES: dict[int | str, dict[str, Any]] = {
    206: {"description": "the byte range asked for (``Range: bytes=...``)"},
    416: {"description": "a byte range outside the clip"},
}


@router.get("/probe-images/{image_id}/clip", response_class=FileResponse, responses=RANGES)
def probe_clip(
    request: Request,
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.READ_OWN_SUBMISSIONS, P.READ_ALL_SUBMISSIONS)],
    image_id: Id,
) -> FileResponse:
    """The stored clip, unchanged, with byte ranges for a player (its view is audited with its sha256)."""
    return clip_response(rt.media.clip(actor, image_id, record_view=first_range(request)))


@router.get("/candidates/{candidate_id}/image", response_class=Response)
def candidate_image(
    rt: RuntimeDep, actor: Annotated[Principal, Allowed(P.REVIEW, P.CONFIRM)], candidate_id: Id
) -> Response:
    """The custody image behind a candidate (its template's image; the view is audited)."""
    return image_response(rt.media.candidate_image(actor, candidate_id))


@router.get("/person-candidates/{candidate_id}/image", response_class=Response)
def person_candidate_image(
    rt: RuntimeDep, actor: Annotated[Principal, Allowed(P.REVIEW, P.CONFIRM)], candidate_id: Id
) -> Response:
    """The front view of the subject a person's candidate names (the view is audited)."""
    return image_response(rt.media.person_candidate_image(actor, candidate_id))
