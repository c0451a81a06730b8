"""Images for reviewers: served only to those allowed, never cached, every view audited (R1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import Response

from service.api.deps import Allowed, RuntimeDep
from service.api.errors import ERRORS
from service.domain.roles import Permission as P
from service.domain.roles import Principal
from service.services.media import Media

router = APIRouter(responses=ERRORS, tags=["images"])

NO_STORE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}


def image_response(media: Media) -> Response:
    """An image shown inline with its real content type, never cached."""
    return Response(media.data, media_type=media.media_type, headers=NO_STORE | {"Content-Disposition": "inline"})


@router.get("/probe-images/{image_id}/image", response_class=Response)
def probe_image(
    rt: RuntimeDep,
    actor: Annotated[Principal, Allowed(P.READ_OWN_SUBMISSIONS, P.READ_ALL_SUBMISSIONS)],
    image_id: int,
) -> Response:
    """The stored still (signed-in, authorised users only; never cached; the view is audited)."""
    return image_response(rt.media.probe_image(actor, image_id))


@router.get("/candidates/{candidate_id}/image", response_class=Response)
def candidate_image(
    rt: RuntimeDep, actor: Annotated[Principal, Allowed(P.REVIEW, P.CONFIRM)], candidate_id: int
) -> Response:
    """The custody image behind a candidate (its template's image; the view is audited)."""
    return image_response(rt.media.candidate_image(actor, candidate_id))


@router.get("/person-candidates/{candidate_id}/image", response_class=Response)
def person_candidate_image(
    rt: RuntimeDep, actor: Annotated[Principal, Allowed(P.REVIEW, P.CONFIRM)], candidate_id: int
) -> Response:
    """The front view of the subject a person's candidate names (the view is audited)."""
    return image_response(rt.media.person_candidate_image(actor, candidate_id))
