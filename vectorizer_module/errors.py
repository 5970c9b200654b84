"""One error hierarchy for the whole service.

Each class carries the HTTP status it maps to; ``server.errors`` turns any of them into a JSON body
``{"error": message}`` in one place. Messages are shown to Weaviate users as they are, so they say what
was wrong, which item, and what to change.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; ``status`` is the HTTP status, ``reason`` a short label for metrics and logs,
    ``headers`` extra response headers, ``param`` the request field at fault (shown by the OpenAI-style
    error shape of ``/v1/`` routes) or None."""

    status: int = 500
    reason: str = "internal"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.reason
        self.headers = dict(headers or {})
        self.param = param


class BadInput(ServiceError):
    """The client sent something we cannot use (not JSON, wrong type, bad base64, not an image)."""

    status = 400
    reason = "bad_input"


class TooLarge(ServiceError):
    """A body, an item or an image is over a configured limit; the message names the setting."""

    status = 413
    reason = "too_large"


class Unavailable(ServiceError):
    """Not able to serve now (model still loading, shutting down); the client may retry."""

    status = 503
    reason = "unavailable"

    def __init__(self, message: str, *, reason: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, reason=reason, headers={"Retry-After": str(retry_after)})


class Unauthorized(ServiceError):
    """An API key is configured and the request did not carry it."""

    status = 401
    reason = "unauthorized"


class ModelFailure(ServiceError):
    """The model failed on valid input: a fault of the server, not of the client."""

    status = 500
    reason = "model_failure"


class ModelLayoutError(Exception):
    """A model directory fits none of the supported layouts; raised at start-up, never over HTTP."""
