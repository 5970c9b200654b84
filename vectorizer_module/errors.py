"""One error hierarchy for the whole service.

Each class carries the HTTP status it maps to; ``server.errors`` turns any of them into a JSON body
``{"error": message}`` in one place. Messages are shown to Weaviate users as they are, so they say what
was wrong, which item, and what to change.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; ``status`` is the HTTP status, ``headers`` extra response headers."""

    status: int = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadInput(ServiceError):
    """The client sent something we cannot use (not JSON, wrong type, bad base64, not an image)."""

    status = 400


class TooLarge(ServiceError):
    """A body, an item or an image is over a configured limit; the message names the setting."""

    status = 413


class Unavailable(ServiceError):
    """Not able to serve now (model still loading, shutting down); the client may retry."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class ModelFailure(ServiceError):
    """The model failed on valid input: a fault of the server, not of the client."""

    status = 500


class ModelLayoutError(Exception):
    """A model directory fits none of the supported layouts; raised at start-up, never over HTTP."""
