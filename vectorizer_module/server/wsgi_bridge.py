"""A whole request → the WSGI call of the Flask app → a whole response (PEP 3333).

The body is already in memory (``connection.py`` buffers it), so ``wsgi.input`` is a ``BytesIO`` that
never blocks, and ``CONTENT_LENGTH`` is its real length whether the client sent it chunked or not.
Two keys of our own reach the app: ``clip.received``, when the request's last byte arrived (its
deadline counts from there, so time spent waiting for an HTTP thread counts too), and ``clip.cancelled``,
whether its client has gone.
"""

from __future__ import annotations

import io
import sys
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

from vectorizer_module.server.connection import Request, Response, split_target
from vectorizer_module.server.lifecycle import WSGIApp

_BODILESS = frozenset({204, 304})


def environ_for(request: Request, *, multiprocess: bool) -> dict[str, Any]:
    path, query = split_target(request.target)
    host, port = request.local[:2]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_NAME": str(host),
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
        "REMOTE_ADDR": str(request.peer[0]) if request.peer else "",
        "REMOTE_PORT": str(request.peer[1]) if request.peer else "",
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "clip.received": request.received,
        "clip.cancelled": request.cancelled,
    }
    for name, value in request.headers:
        if b"_" in name:
            continue  # X_Api_Key would pass for X-Api-Key in the environ: dropped, as gunicorn does
        key = name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key == "CONTENT_TYPE":
            environ[key] = text
        elif key != "CONTENT_LENGTH":
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


def call(app: WSGIApp, request: Request, *, multiprocess: bool) -> Response:
    """Run the app on one request; its answer, whole."""
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"], answer["headers"] = status, headers

    chunks = app(environ_for(request, multiprocess=multiprocess), start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    code, _, phrase = answer["status"].partition(" ")
    status = int(code)
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer["headers"]]
    if request.method != "HEAD":  # a HEAD answer keeps the length its GET would have
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        if status not in _BODILESS:
            headers.append((b"Content-Length", str(len(body)).encode()))
    return Response(status, phrase.encode("latin-1"), headers, b"" if status in _BODILESS else body)


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
