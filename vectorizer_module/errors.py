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


class ClientTimeout(ServiceError):
    """The client stopped sending its request body; the connection is closed after this answer."""

    status = 408
    reason = "client_timeout"


class HeadTooLarge(ServiceError):
    """The request line and headers are longer than the HTTP layer reads."""

    status = 431
    reason = "head_too_large"


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


class ClientGone(Unavailable):
    """The client disconnected while its request waited; nobody will read the answer."""

    reason = "client_gone"


# The refusals of a request waiting for the model, built here once whichever layer notices them.


def still_loading(detail: str = "the model is still loading") -> Unavailable:
    return Unavailable(f"{detail}; retry when /.well-known/ready answers 204", reason="loading")


def shutting_down() -> Unavailable:
    return Unavailable(
        "the service is shutting down; retry against another instance", reason="shutting_down", retry_after=5
    )


def past_deadline() -> Unavailable:
    return Unavailable(
        "the request waited for the model past its deadline and was dropped; see VECTORIZER_REQUEST_DEADLINE",
        reason="deadline",
    )


def client_gone() -> ClientGone:
    return ClientGone("the client disconnected before its request reached the model")


def at_capacity(waiting: int) -> Unavailable:
    return Unavailable(
        f"the service is at capacity ({waiting} items waiting for the model); retry shortly, or raise "
        "VECTORIZER_MAX_QUEUE",
        reason="queue_full",
        retry_after=1,
    )


def body_too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"request body is larger than {limit} bytes; raise VECTORIZER_MAX_BODY_BYTES to accept it", reason="body_size"
    )


def head_too_large(limit: int) -> HeadTooLarge:
    return HeadTooLarge(f"the request head (request line and headers) is longer than {limit} bytes")


def malformed_http(detail: str) -> BadInput:
    return BadInput(f"malformed HTTP/1.1 request: {detail}", reason="bad_http")


def request_too_slow(seconds: float) -> ClientTimeout:
    return ClientTimeout(
        f"the request did not arrive whole within {seconds:g} s; see VECTORIZER_CLIENT_TIMEOUT",
    )


def too_many_connections(limit: int) -> Unavailable:
    return Unavailable(
        f"this worker holds its limit of {limit} connections, none of them idle; retry shortly, or raise "
        "VECTORIZER_MAX_CONNECTIONS",
        reason="connections",
    )


def more_than_the_queue_holds(items: int, limit: int) -> TooLarge:
    return TooLarge(
        f"this request has {items} items for the model, more than the queue ever holds ({limit}); send it in "
        "parts or raise VECTORIZER_MAX_QUEUE",
        reason="queue_size",
    )
