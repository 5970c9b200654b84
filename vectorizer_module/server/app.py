"""The Flask application: Weaviate's module routes, the other protocols (``/v1/embeddings``, ``/vectors``),
/metrics and the OpenAPI description, calling only the engine and the protocol modules."""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from vectorizer_module.admission import Cancelled, never_cancelled
from vectorizer_module.engine import Embedder
from vectorizer_module.errors import Unauthorized, body_too_large, shutting_down, still_loading
from vectorizer_module.server import access
from vectorizer_module.server.errors import register_error_handlers
from vectorizer_module.server.lifecycle import Lifecycle
from vectorizer_module.server.openapi import openapi_body

JSON = "application/json"
# health probes and the API description stay open
PROTECTED = frozenset({"/vectorize", "/meta", "/metrics", "/v1/embeddings", "/vectors"})


def _presented_key() -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-API-Key", "")


def _client_gone(environ: dict[str, Any]) -> Cancelled:
    """Whether the client of this request has gone (the HTTP front's ``clip.cancelled``; see
    ``connection.py`` for how a closed client is told from a half-closed one)."""
    return environ.get("clip.cancelled", never_cancelled)


def _deadline(environ: dict[str, Any], seconds: float) -> float:
    """The request's deadline, counted from when its last byte arrived (``clip.received``, set by the
    HTTP front) so that waiting for an HTTP thread counts too; from now when there is none."""
    return environ.get("clip.received", time.monotonic()) + seconds


def create_app(engine: Embedder, lifecycle: Lifecycle | None = None) -> Flask:
    settings, metrics = engine.settings, engine.metrics
    lifecycle = lifecycle or Lifecycle(gauge=metrics.in_flight)
    app = Flask("vectorizer_module")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # done by Lifecycle.wrap without a redirect
    register_error_handlers(app, settings.max_body_bytes, metrics)

    def read_body() -> bytes:
        """The request body, at most ``VECTORIZER_MAX_BODY_BYTES``. The HTTP front has it whole already
        and refuses larger ones first; this holds for any other WSGI server too (a chunked body included,
        which Werkzeug would cut at the limit without a word)."""
        limit = settings.max_body_bytes
        if (request.content_length or 0) > limit:
            raise body_too_large(limit)
        data = request.environ["wsgi.input"].read(limit + 1)
        if len(data) > limit:
            raise body_too_large(limit)
        return data

    def require_serving() -> None:
        """Every worker answers alike: work and readiness wait until all workers have their models."""
        if lifecycle.draining:
            raise shutting_down()
        if not engine.ready:
            raise still_loading()
        peers = lifecycle.peers_loading()
        if peers:
            raise still_loading(peers)

    @app.before_request
    def start() -> None:
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
        g.sizes = {}
        if settings.api_key and (request.path.rstrip("/") or "/") in PROTECTED:
            if not hmac.compare_digest(_presented_key().encode(), settings.api_key.encode()):
                raise Unauthorized(
                    "missing or wrong API key: send 'Authorization: Bearer <key>' or "
                    "'X-API-Key: <key>' (VECTORIZER_API_KEY is set on this service)"
                )

    @app.after_request
    def finish(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        response.headers["X-Request-Id"] = g.get("request_id", "")
        access.record(
            metrics,
            request.method,
            endpoint,
            response.status_code,
            time.perf_counter() - g.get("started", time.perf_counter()),
            g.get("request_id", ""),
            request.content_length or 0,
            **g.get("sizes", {}),
        )
        return response

    @app.get("/.well-known/live")
    def live() -> Response:
        return Response(status=204)

    @app.get("/.well-known/ready")
    def ready() -> Response:
        require_serving()
        return Response(status=204)

    @app.get("/meta")
    def meta() -> Response:
        require_serving()
        return Response(engine.meta_body, status=200, mimetype=JSON)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), status=200, content_type=CONTENT_TYPE_LATEST)

    def embedding_route(route: str) -> Response:
        """The work of an embedding route (``answers.py``), wherever the engine runs it."""
        require_serving()
        deadline = _deadline(request.environ, settings.request_deadline)
        found = engine.answer(route, read_body(), deadline=deadline, cancelled=_client_gone(request.environ))
        g.sizes = found.sizes
        return Response(found.body, status=200, mimetype=JSON)

    @app.post("/vectorize")
    def vectorize() -> Response:
        return embedding_route("vectorize")

    @app.post("/v1/embeddings")
    def openai_embeddings() -> Response:
        return embedding_route("openai_embeddings")

    @app.post("/vectors")
    @app.post("/vectors/")
    def weaviate_vectors() -> Response:
        return embedding_route("weaviate_vectors")

    @app.get("/openapi.json")
    def openapi_description() -> Response:
        return Response(openapi_body(), status=200, mimetype=JSON)

    return app
