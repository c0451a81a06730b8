"""The cap on one request's body: its declared length, and the bytes as they arrive.

``RequestSizeLimit`` wraps the app's ``receive``: a request that declares (``Content-Length``) or
sends more than the limit is refused with 413 ``request_too_large`` the moment the body is read,
before any file of it is staged or stored. The limit is read per request
(``ImageSettings.max_request_bytes`` of the running service).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestTooLarge(HTTPException):
    """Raised from the body's ``receive``; FastAPI's form parsing lets an HTTP exception through."""

    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request's body exceeds the limit of {limit} bytes (every file together)")


class RequestSizeLimit:
    """ASGI middleware: at most ``limit()`` bytes of body per request."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = Headers(scope=scope).get("content-length", "")
        too_long = declared.isdigit() and int(declared) > limit
        received = 0

        async def limited() -> Message:
            nonlocal received
            if too_long:
                raise RequestTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(limit)
            return message

        await self.app(scope, limited, send)
