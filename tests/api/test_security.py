"""Cross-site writes, the CSRF token on cookie-authenticated API writes and sign-in, cookie flags and the
security headers (issue 16, item 4), against the real app, database and users."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from service.api.security import CSRF_HEADER, csrf_for
from service.app import create_app
from service.db.models import AuditEvent, User
from service.runtime import Runtime
from tests.fixtures import PASSWORD, auth

FOREIGN = "https://evil.example"


@pytest.fixture(scope="module")
def client(runtime: Runtime, tokens: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime)) as test_client:
        yield test_client


def session_of(client: TestClient, user: str) -> str:
    response = client.post("/auth/login", json={"username": user, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.cookies.clear()  # each request below names its cookie itself
    return str(response.json()["token"])


def audit_count(runtime: Runtime) -> int:
    with runtime.factory() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def disabled(runtime: Runtime, name: str) -> bool:
    with runtime.factory() as session:
        return bool(session.scalar(select(User.disabled).where(User.username == name)))


def code_of(response: Response) -> str:
    return str(response.json()["error"]["code"])


def test_a_write_from_another_site_is_refused_and_changes_nothing(client: TestClient, runtime: Runtime) -> None:
    cookie = {"Cookie": f"rfr_session={session_of(client, 'adam')}"}
    before = audit_count(runtime)
    # Even with the session cookie and the right CSRF token, a page of another origin may not write.
    token = {CSRF_HEADER: csrf_for(cookie["Cookie"].split("=", 1)[1])}
    for path in ("/retention/purge?days=3650", "/users/ann/disable", "/submissions"):
        response = client.post(path, headers=cookie | token | {"Origin": FOREIGN}, json={})
        assert response.status_code == 403, (path, response.text)
        assert code_of(response) == "cross_origin"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    response = client.post("/users/ann/disable", headers=cookie | token | {"Origin": "null"})
    assert response.status_code == 403
    assert not disabled(runtime, "ann")
    assert audit_count(runtime) == before


def test_a_cookie_write_needs_the_csrf_token_and_a_bearer_token_does_not(
    client: TestClient, runtime: Runtime, tokens: dict[str, str]
) -> None:
    session = session_of(client, "adam")
    cookie = {"Cookie": f"rfr_session={session}"}
    for headers in (cookie, cookie | {CSRF_HEADER: "0" * 32}, cookie | {CSRF_HEADER: csrf_for(tokens["adam"])}):
        response = client.post("/users/ann/disable", headers=headers)
        assert response.status_code == 403, response.text
        assert code_of(response) == "csrf_failed"
        assert not disabled(runtime, "ann")
    # Reads by cookie need no token; a write with it (same origin, or no Origin at all) goes through.
    assert client.get("/auth/me", headers=cookie).status_code == 200
    own = f"http://{client.base_url.host}"
    response = client.post("/users/ann/disable", headers=cookie | {CSRF_HEADER: csrf_for(session), "Origin": own})
    assert response.status_code == 204, response.text
    assert disabled(runtime, "ann")
    response = client.post("/users/ann/enable", headers=auth(tokens, "adam"))
    assert response.status_code == 204, response.text
    assert not disabled(runtime, "ann")


def test_the_sign_in_form_needs_its_csrf_token(client: TestClient) -> None:
    client.cookies.clear()
    response = client.post(
        "/login", data={"username": "rita", "password": PASSWORD, "next": "/ui"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert "rfr_session" not in response.headers.get("set-cookie", "")
    assert "expired or came from another site" in response.text

    form = client.get("/login")
    assert form.status_code == 200
    token = form.cookies["rfr_login_csrf"]
    assert f'name="csrf" value="{token}"' in form.text
    client.cookies.set("rfr_login_csrf", token)
    forged = client.post(
        "/login", data={"username": "rita", "password": PASSWORD, "csrf": "forged"}, follow_redirects=False
    )
    assert forged.status_code == 403
    client.cookies.set("rfr_login_csrf", token)
    response = client.post(
        "/login", data={"username": "rita", "password": PASSWORD, "csrf": token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert "rfr_session=" in response.headers["set-cookie"]
    client.cookies.clear()


def session_cookie_flags(response: Response) -> str:
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("rfr_session="))
    return cookie.lower()


def test_session_cookies_are_secure_except_plain_http_on_loopback(runtime: Runtime, tokens: dict[str, str]) -> None:
    body = {"username": "cora", "password": PASSWORD}
    app = create_app(runtime=runtime)
    with TestClient(app, base_url="http://rfr.police.example") as remote:
        flags = session_cookie_flags(remote.post("/auth/login", json=body))
        assert "; secure" in flags and "httponly" in flags and "samesite=strict" in flags
    with TestClient(app, base_url="https://127.0.0.1") as tls:
        assert "; secure" in session_cookie_flags(tls.post("/auth/login", json=body))
    with TestClient(app, base_url="http://127.0.0.1:8000") as local:
        flags = session_cookie_flags(local.post("/auth/login", json=body))
        assert "; secure" not in flags and "httponly" in flags


def test_every_response_carries_the_security_headers(client: TestClient, tokens: dict[str, str]) -> None:
    me = client.get("/auth/me", headers=auth(tokens, "rita"))
    login = client.get("/login")
    missing = client.get("/submissions/999999", headers=auth(tokens, "rita"))
    for response in (me, login, missing):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert "script-src 'self';" in response.headers["Content-Security-Policy"]
        assert "no-store" in response.headers["Cache-Control"]
    assert missing.status_code == 404
    docs = client.get("/docs")
    assert docs.status_code == 200 and "'unsafe-inline'" in docs.headers["Content-Security-Policy"]
    static = client.get("/static/style.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")
    assert static.headers["X-Content-Type-Options"] == "nosniff"
