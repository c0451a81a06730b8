"""One error hierarchy for the whole service: every error carries a stable code.

The HTTP layer maps ``http_status``; the CLI prints ``code`` and ``message``.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class of every error the service raises on purpose."""

    code: str = "internal_error"
    http_status: int = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ImageUnreadable(ServiceError):
    """Bytes that are empty, truncated, not an image, or too large to decode safely."""

    code = "image_unreadable"
    http_status = 422


class ClipUnreadable(ServiceError):
    """A video clip that is empty, truncated, corrupt, of an unsupported container or codec, or over a limit.

    ``code`` says which: ``clip_unreadable``, ``clip_unsupported`` or ``clip_too_large``.
    """

    code = "clip_unreadable"
    http_status = 422


class ModelUnavailable(ServiceError):
    """A model file is missing, truncated or does not match its manifest."""

    code = "model_unavailable"
    http_status = 503


class ConfigurationError(ServiceError):
    code = "configuration_error"
    http_status = 500


class Unauthenticated(ServiceError):
    code = "unauthenticated"
    http_status = 401


class TooManyAttempts(ServiceError):
    """Sign-in refused for a while after repeated failures for one user name or from one address."""

    code = "too_many_attempts"
    http_status = 429


class Forbidden(ServiceError):
    code = "forbidden"
    http_status = 403


class NotFound(ServiceError):
    code = "not_found"
    http_status = 404


class InvalidRequest(ServiceError):
    code = "invalid_request"
    http_status = 422


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"
    http_status = 413


class PackMismatch(ServiceError):
    """A search or enrolment with a model pack other than the gallery's (R11)."""

    code = "pack_mismatch"
    http_status = 409


class Conflict(ServiceError):
    code = "conflict"
    http_status = 409


class IndexUnavailable(ServiceError):
    """The persisted gallery index is missing, stale (disagrees with the database) or corrupt.

    ``code`` says which: ``index_missing``, ``index_stale`` or ``index_corrupt``. The database is
    the source of truth: the caller rebuilds the index from stored embeddings.
    """

    code = "index_unavailable"
    http_status = 503
