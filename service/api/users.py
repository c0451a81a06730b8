"""Sign-in, users and tokens (R10)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.api.deps import (
    SESSION_COOKIE,
    Allowed,
    CurrentPrincipal,
    RuntimeDep,
    clear_session_cookie,
    set_session_cookie,
)
from service.api.errors import ERRORS, THROTTLED
from service.api.schemas import LoginRequest, LoginResponse, Me, PasswordReset, TokenOut, UserCreate
from service.domain.roles import PERMISSIONS, Principal
from service.domain.roles import Permission as P
from service.services.views import UserOut

router = APIRouter(responses=ERRORS)


@router.post("/auth/login", response_model=LoginResponse, tags=["auth"], responses=THROTTLED)
def login(rt: RuntimeDep, body: LoginRequest, request: Request, response: Response) -> dict[str, Any]:
    """Exchange a user name and password for a session token (also set as an HttpOnly cookie); 429
    after repeated failures for the user name or from the address."""
    address = request.client.host if request.client else ""
    token, principal, expires = rt.users.login(body.username, body.password, address)
    set_session_cookie(request, response, rt, token, expires)
    return {"token": token, "expires_at": expires, "username": principal.username, "role": principal.role}


@router.post("/auth/logout", status_code=204, tags=["auth"])
def logout(rt: RuntimeDep, request: Request, _: CurrentPrincipal) -> Response:
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() or request.cookies.get(SESSION_COOKIE, "")
    rt.users.logout(token)
    response = Response(status_code=204)
    clear_session_cookie(request, response, rt)
    return response


@router.get("/auth/me", response_model=Me, tags=["auth"])
def me(principal: CurrentPrincipal) -> dict[str, Any]:
    return {
        "username": principal.username,
        "role": principal.role,
        "permissions": sorted(p.value for p in PERMISSIONS[principal.role]),
    }


Admin = Annotated[Principal, Allowed(P.MANAGE_USERS)]


@router.get("/users", response_model=list[UserOut], tags=["users"])
def list_users(rt: RuntimeDep, _: Admin) -> list[UserOut]:
    return rt.users.list()


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
def create_user(rt: RuntimeDep, actor: Admin, body: UserCreate) -> UserOut:
    rt.users.create(actor, body.username, body.role, body.password)
    return next(u for u in rt.users.list() if u.username == body.username.strip())


@router.post("/users/{username}/disable", status_code=204, tags=["users"])
def disable_user(rt: RuntimeDep, actor: Admin, username: str) -> Response:
    rt.users.set_disabled(actor, username, True)
    return Response(status_code=204)


@router.post("/users/{username}/enable", status_code=204, tags=["users"])
def enable_user(rt: RuntimeDep, actor: Admin, username: str) -> Response:
    rt.users.set_disabled(actor, username, False)
    return Response(status_code=204)


@router.post("/users/{username}/reset", status_code=204, tags=["users"])
def reset_password(rt: RuntimeDep, actor: Admin, username: str, body: PasswordReset) -> Response:
    rt.users.reset_password(actor, username, body.password)
    return Response(status_code=204)


@router.post("/users/{username}/tokens", response_model=TokenOut, status_code=201, tags=["users"])
def issue_token(rt: RuntimeDep, actor: Admin, username: str) -> dict[str, str]:
    return {"username": username, "token": rt.users.issue_token(actor, username)}
