"""The one place where errors become HTTP responses: a JSON body in the shape of the protocol that owns
the request's path (``protocols/owners.py``): ``{"error": "..."}`` for Weaviate's, OpenAI's
``{"error": {"message", "type", "param", "code"}}`` under ``/v1/`` so that OpenAI clients can read it."""

from __future__ import annotations

import logging

from flask import Flask, Response, has_request_context, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from vectorizer_module.errors import ServiceError, body_too_large
from vectorizer_module.metrics import Metrics
from vectorizer_module.protocols.owners import error_body

log = logging.getLogger(__name__)


def error_payload(error: ServiceError, path: str) -> bytes:
    """``error``'s body, for an answer given before the request reaches Flask (by the HTTP front)."""
    return error_body(path, error.status, error.message, error.param, error.reason)


def json_error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> Response:
    path = request.path if has_request_context() else "/"
    body = error_body(path, status, message, param, code)
    return Response(body, status=status, headers=headers, mimetype="application/json")


def register_error_handlers(app: Flask, max_body_bytes: int, metrics: Metrics) -> None:
    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError) -> Response:
        metrics.rejected.labels(exc.reason).inc()
        if exc.status >= 500 and exc.status != 503:
            log.warning("%d: %s", exc.status, exc.message)
        return json_error(exc.status, exc.message, exc.headers, param=exc.param, code=exc.reason)

    @app.errorhandler(RequestEntityTooLarge)
    def werkzeug_body_too_large(exc: RequestEntityTooLarge) -> Response:
        return service_error(body_too_large(max_body_bytes))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        metrics.rejected.labels(f"http_{exc.code}").inc()
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return json_error(exc.code or 500, f"{exc.name}: {exc.description}", headers, code=f"http_{exc.code}")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        metrics.rejected.labels("internal").inc()
        log.exception("unexpected error")
        return json_error(500, f"internal error: {type(exc).__name__}: {exc}", code="internal")
