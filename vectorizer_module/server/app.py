"""The Flask application: Weaviate's module routes, calling only the engine and the protocol."""

from __future__ import annotations

from flask import Flask, Response, request

from vectorizer_module import protocol
from vectorizer_module.engine import Engine
from vectorizer_module.errors import Unavailable
from vectorizer_module.server.errors import register_error_handlers
from vectorizer_module.server.lifecycle import Lifecycle

JSON = "application/json"


def create_app(engine: Engine, lifecycle: Lifecycle | None = None) -> Flask:
    lifecycle = lifecycle or Lifecycle()
    app = Flask("vectorizer_module")
    app.config["MAX_CONTENT_LENGTH"] = engine.settings.max_body_bytes
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # done by Lifecycle.wrap without a redirect
    register_error_handlers(app, engine.settings.max_body_bytes)

    def require_serving() -> None:
        if lifecycle.draining:
            raise Unavailable("the service is shutting down; retry against another instance", retry_after=5)
        if not engine.ready:
            raise Unavailable("the model is still loading; retry when /.well-known/ready answers 204")

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

    @app.post("/vectorize")
    def vectorize() -> Response:
        require_serving()
        parsed = protocol.parse_vectorize(request.get_data(cache=False))
        text_vectors, image_vectors = engine.embed(parsed.texts, parsed.images)
        return Response(protocol.vectorize_response(text_vectors, image_vectors), status=200, mimetype=JSON)

    return app
