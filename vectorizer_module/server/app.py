"""The Flask application: Weaviate's module routes, the other protocols (``/v1/embeddings``, ``/vectors``),
/metrics and the OpenAPI description, calling only the engine and the protocol modules."""

from __future__ import annotations

import hmac
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from vectorizer_module.admission import Cancelled
from vectorizer_module.engine import Engine
from vectorizer_module.errors import Unauthorized, Unavailable
from vectorizer_module.protocols import multi2vec_clip as protocol
from vectorizer_module.protocols import openai, vectors
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


def create_app(engine: Engine, lifecycle: Lifecycle | None = None) -> Flask:
    lifecycle = lifecycle or Lifecycle()
    settings, metrics = engine.settings, engine.metrics
    metrics.in_flight.set_function(lambda: lifecycle.in_flight)
    app = Flask("vectorizer_module")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # done by Lifecycle.wrap without a redirect
    register_error_handlers(app, settings.max_body_bytes, metrics)

    def require_serving() -> None:
        if lifecycle.draining:
            raise Unavailable(
                "the service is shutting down; retry against another instance", reason="shutting_down", retry_after=5
            )
        if not engine.ready:
            raise Unavailable("the model is still loading; retry when /.well-known/ready answers 204", reason="loading")

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

    @app.post("/vectorize")
    def vectorize() -> Response:
        require_serving()
        parsed = protocol.parse_vectorize(request.get_data(cache=False), settings)
        g.sizes = {
            "texts": len(parsed.texts),
            "images": len(parsed.images),
            "image_bytes": sum(len(i) for i in parsed.images),
        }
        disconnected = request.environ.get("waitress.client_disconnected", lambda: False)
        text_vectors, image_vectors = engine.embed(
            parsed.texts, parsed.images, deadline=time.monotonic() + settings.request_deadline, cancelled=disconnected
        )
        return Response(protocol.vectorize_response(text_vectors, image_vectors), status=200, mimetype=JSON)

    def deadline() -> float:
        return time.monotonic() + settings.request_deadline

    def disconnected() -> Cancelled:
        return request.environ.get("waitress.client_disconnected", lambda: False)

    @app.post("/v1/embeddings")
    def openai_embeddings() -> Response:
        require_serving()
        parsed = openai.parse_embeddings(request.get_data(cache=False), settings, engine.dimension)
        g.sizes = {
            "texts": len(parsed.texts),
            "images": len(parsed.images),
            "image_bytes": sum(len(i) for i in parsed.images),
        }
        tokens = sum(engine.token_counts(parsed.texts))
        text_vectors, image_vectors = engine.embed(
            parsed.texts, parsed.images, deadline=deadline(), cancelled=disconnected()
        )
        found = text_vectors if parsed.modality == "text" else image_vectors
        body = openai.embeddings_response(found, parsed.encoding_format, engine.model_name, tokens)
        return Response(body, status=200, mimetype=JSON)

    @app.post("/vectors")
    @app.post("/vectors/")
    def weaviate_vectors() -> Response:
        require_serving()
        parsed = vectors.parse_vectors(request.get_data(cache=False), settings, engine.dimension)
        g.sizes = {
            "texts": len(parsed.texts),
            "images": len(parsed.images),
            "image_bytes": sum(len(i) for i in parsed.images),
        }
        text_vectors, image_vectors = engine.embed(
            parsed.texts, parsed.images, deadline=deadline(), cancelled=disconnected()
        )
        found = image_vectors if parsed.kind == "image" else text_vectors
        return Response(vectors.vectors_response(parsed, found, engine.dimension), status=200, mimetype=JSON)

    @app.get("/openapi.json")
    def openapi_description() -> Response:
        return Response(openapi_body(), status=200, mimetype=JSON)

    return app
