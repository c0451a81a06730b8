"""What every router depends on: the runtime, the signed-in principal (R10) and bounded uploads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request, Response, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.security import CSRF_HEADER, UNSAFE_METHODS, cookie_secure, csrf_matches
from service.db.image_store import ImageStore, StagedFile
from service.domain.roles import Permission, Principal
from service.errors import Forbidden, PayloadTooLarge, Unauthenticated
from service.runtime import Runtime

bearer = HTTPBearer(auto_error=False, description="a session token from POST /auth/login, or an API token")
SESSION_COOKIE = "rfr_session"


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def current_principal(
    request: Request,
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    token = credentials.credentials if credentials is not None else request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthenticated("sign in first: send 'Authorization: Bearer <token>'")
    # The browser sends the cookie by itself, with any site's request: a write needs proof it came from our page.
    if (
        credentials is None
        and request.method in UNSAFE_METHODS
        and not csrf_matches(request.headers.get(CSRF_HEADER, ""), token)
    ):
        raise Forbidden(
            f"a write signed in by the session cookie needs the {CSRF_HEADER} header (or a bearer token)",
            code="csrf_failed",
        )
    # A request signed in by the cookie is the pages' (their images, their progress polling): "web".
    principal = rt.users.authenticate(token, via="api" if credentials is not None else "web")
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def set_session_cookie(request: Request, response: Response, rt: Runtime, token: str, expires: datetime) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure outside development (``cookie_secure``)."""
    secure = cookie_secure(request, rt.settings.auth.cookie_secure)
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure, expires=expires, path="/"
    )


def clear_session_cookie(request: Request, response: Response, rt: Runtime) -> None:
    secure = cookie_secure(request, rt.settings.auth.cookie_secure)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=secure)


def require(*permissions: Permission) -> Callable[[Principal], Principal]:
    """A dependency admitting a principal holding any one of ``permissions``."""

    def check(principal: CurrentPrincipal) -> Principal:
        if not any(principal.can(p) for p in permissions):
            raise Forbidden(f"role {principal.role} may not do this")
        return principal

    return check


def Allowed(*permissions: Permission) -> object:
    return Depends(require(*permissions))


def read_upload(upload: UploadFile, limit: int) -> bytes:
    """Read at most ``limit`` bytes; refuse anything larger with 413."""
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{upload.filename}: exceeds the limit of {limit} bytes")
    return data


def stage_uploads(store: ImageStore, uploads: list[UploadFile], limit: int) -> list[StagedFile]:
    """Stream each upload (as the form parser spooled it) into a staged file of the store, in
    chunks, refusing one over ``limit`` bytes with 413; on any failure none is left staged."""
    staged: list[StagedFile] = []
    try:
        for upload in uploads:
            try:
                staged.append(store.stage(upload.file, limit))
            except PayloadTooLarge as exc:
                raise PayloadTooLarge(f"{upload.filename}: {exc.message}") from exc
    except BaseException:
        for file in staged:
            store.discard(file)
        raise
    return staged
