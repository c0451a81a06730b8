"""HTTP defences every response and every write gets, API and pages alike (issue 16, item 4).

* **Cross-origin writes are refused.** A browser names the page that sent a request in ``Origin``;
  a POST, PUT, PATCH or DELETE whose ``Origin`` is not this service's own (its ``Host``) or one of
  ``RFR_AUTH__ALLOWED_ORIGINS`` answers 403 ``cross_origin`` before any handler runs. A client
  that is not a browser sends no ``Origin`` and is judged by its credentials alone.
* **Cookie-authenticated API writes carry the CSRF token** (``X-CSRF-Token``, the same token the
  pages put in their forms): the session cookie is sent by the browser on its own, a bearer
  token never is, so only the cookie needs it (see ``service.api.deps.current_principal``).
* **Headers**: ``X-Content-Type-Options: nosniff``; no framing (``X-Frame-Options: DENY`` and
  CSP ``frame-ancestors 'none'``); a Content-Security-Policy allowing this origin's own scripts,
  styles, images and media only (``/docs`` and ``/redoc`` also need their bundled inline start-up
  script); no ``Referer`` leaves for another site (``same-origin``: with ``no-referrer`` a browser
  sends ``Origin: null`` on the service's own form posts); and ``Cache-Control: no-store`` on everything but
  the static assets — JSON answers name people, cases and custody records.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "X-CSRF-Token"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI and ReDoc (bundled, served locally) start from an inline script and ReDoc runs a blob: worker.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
CACHEABLE_PATHS = ("/static/",)

BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
NO_STORE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}


def csrf_for(session_token: str) -> str:
    """The CSRF token of a session: derived from it, so a page and the API agree without storing it."""
    return hashlib.sha256(f"csrf:{session_token}".encode()).hexdigest()[:32]


def csrf_matches(given: str, session_token: str) -> bool:
    return bool(given) and hmac.compare_digest(given, csrf_for(session_token))


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cookie_secure(request: Request, configured: bool | None) -> bool:
    """Whether session cookies carry ``Secure``: as configured, else always except plain HTTP to a
    loopback address (development on this machine, where browsers treat the origin as secure anyway)."""
    if configured is not None:
        return configured
    return not (request.url.scheme == "http" and _is_loopback(request.headers.get("host", "")))


class SecurityMiddleware:
    """A pure ASGI middleware (it never buffers a body, so clips stream with their byte ranges)."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    def origin_allowed(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        if origin in self.allowed:
            return True
        host = headers.get("host", "").lower()
        return origin != "null" and bool(host) and urlsplit(origin).netloc == host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = Headers(scope=scope)
        if scope.get("method", "GET") in UNSAFE_METHODS and not self.origin_allowed(headers):
            await self.refuse(headers, send)
            return
        extra = dict(BASE_HEADERS)
        extra["Content-Security-Policy"] = DOCS_CSP if path.startswith(DOCS_PATHS) else CSP
        if not path.startswith(CACHEABLE_PATHS):
            extra |= NO_STORE

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    if name not in response_headers:
                        response_headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def refuse(self, headers: Headers, send: Send) -> None:
        message = f"a write from another site ({headers.get('origin', '')[:100]}) is refused"
        rid = headers.get("x-request-id", "")
        body = json.dumps({"error": {"code": "cross_origin", "message": message, "request_id": rid}}).encode()
        start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        start_headers += [(k.lower().encode(), v.encode()) for k, v in (BASE_HEADERS | NO_STORE).items()]
        await send({"type": "http.response.start", "status": 403, "headers": start_headers})
        await send({"type": "http.response.body", "body": body})
