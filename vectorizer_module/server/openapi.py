"""The OpenAPI 3.1 description of every route, served at ``GET /openapi.json``.

It is built here in code (so the installed package serves it without data files); ``docs/openapi.json``
is the same document written out by ``python -m vectorizer_module.server.openapi > docs/openapi.json``,
and a test keeps the two equal and checks every route against it.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from vectorizer_module import __version__

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _errors(*statuses: int, schema: str = "Error") -> dict[str, Any]:
    text = {
        400: "Bad input (not JSON, wrong types, bad base64, not an image, wrong dimensions)",
        401: "API key required (VECTORIZER_API_KEY is set) and missing or wrong",
        413: "Body, item count, text or image over a configured limit",
        500: "Fault of the server (the model failed)",
        503: "Model still loading, queue full, deadline passed, or shutting down (with Retry-After)",
    }
    return {str(s): _json(_ref(schema), text[s]) for s in statuses}


_VECTOR = {"type": "array", "items": {"type": "number"}}
_EMPTY = {"description": "No body"}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string", "minLength": 1}}},
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string", "minLength": 1},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "VectorizeRequest": {
        "type": "object",
        "properties": {
            "texts": {"type": ["array", "null"], "items": {"type": "string"}},
            "images": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "base64 images (a data: URI prefix is accepted)",
            },
        },
    },
    "VectorizeResponse": {
        "type": "object",
        "required": ["textVectors", "imageVectors"],
        "properties": {
            "textVectors": {"type": "array", "items": _VECTOR},
            "imageVectors": {"type": "array", "items": _VECTOR},
        },
    },
    "Meta": {
        "type": "object",
        "description": "The reference multi2vec-clip image's /meta for the model's layout (e.g. CLIPConfig.to_dict(), "
        "or clip_model + text_model for sentence-transformers models), and this service's own details under "
        "'clip-vectorizer'",
        "required": ["clip-vectorizer"],
        "properties": {
            "clip-vectorizer": {
                "type": "object",
                "required": ["model", "device", "dtype", "batching", "workers", "versions"],
                "properties": {
                    "model": {
                        "type": "object",
                        "required": ["name", "dimension", "normalized"],
                        "properties": {
                            "name": {"type": "string"},
                            "dimension": {"type": "integer", "minimum": 1},
                            "normalized": {
                                "type": "object",
                                "required": ["text", "image"],
                                "properties": {"text": {"type": "boolean"}, "image": {"type": "boolean"}},
                            },
                        },
                    },
                    "device": {"type": "string"},
                    "backend": {"type": "string"},
                    "dtype": {"type": "string"},
                    "dtype_reason": {"type": "string", "description": "why this dtype (VECTORIZER_DTYPE=auto)"},
                    "batching": {"type": "object"},
                    "workers": {
                        "type": "object",
                        "required": ["count", "torch_threads"],
                        "properties": {"count": {"type": "integer"}, "torch_threads": {"type": "integer"}},
                    },
                    "versions": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            }
        },
    },
    "EmbeddingsRequest": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
            "model": {"type": "string", "description": "accepted and ignored; the answer names the served model"},
            "encoding_format": {"enum": ["float", "base64"], "default": "float"},
            "dimensions": {"type": "integer", "description": "must equal the model's dimension if given"},
            "modality": {
                "enum": ["text", "image"],
                "default": "text",
                "description": "image: every input is a data URI 'data:image/...;base64,...'",
            },
        },
    },
    "EmbeddingsResponse": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": {"type": "integer", "minimum": 0},
                        "embedding": {"oneOf": [_VECTOR, {"type": "string", "contentEncoding": "base64"}]},
                    },
                },
            },
            "model": {"type": "string"},
            "usage": {
                "type": "object",
                "required": ["prompt_tokens", "total_tokens"],
                "properties": {
                    "prompt_tokens": {"type": "integer", "minimum": 0},
                    "total_tokens": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
    "VectorsRequest": {
        "oneOf": [
            {
                "title": "img2vec-neural",
                "type": "object",
                "required": ["image"],
                "properties": {"id": {"type": "string"}, "image": {"type": "string"}},
            },
            {
                "title": "text2vec-transformers",
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string"}, "config": {"type": "object"}},
            },
            {
                "title": "text2vec-transformers batch",
                "type": "object",
                "required": ["texts"],
                "properties": {"texts": {"type": "array", "items": {"type": "string"}}, "config": {"type": "object"}},
            },
        ],
    },
    "VectorsResponse": {
        "oneOf": [
            {
                "title": "img2vec-neural",
                "type": "object",
                "required": ["id", "vector", "dim"],
                "properties": {"id": {"type": "string"}, "vector": _VECTOR, "dim": {"type": "integer"}},
            },
            {
                "title": "text2vec-transformers",
                "type": "object",
                "required": ["text", "vector", "dim", "dims"],
                "properties": {
                    "text": {"type": "string"},
                    "vector": _VECTOR,
                    "dim": {"type": "integer"},
                    "dims": {"type": "integer"},
                },
            },
            {
                "title": "text2vec-transformers batch",
                "type": "object",
                "required": ["vectors", "dims"],
                "properties": {"vectors": {"type": "array", "items": _VECTOR}, "dims": {"type": "integer"}},
            },
        ],
    },
}


def _post(summary: str, request: str, response: str, errors: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(request)}}},
            "responses": {"200": _json(_ref(response), "Vectors, one per input, in order"), **errors},
        }
    }


def build() -> dict[str, Any]:
    """The OpenAPI document as a dict."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clip-vectorizer",
            "version": __version__,
            "description": "CLIP inference for Weaviate's multi2vec-clip, text2vec-transformers and "
            "img2vec-neural modules, and OpenAI-style embeddings.",
        },
        "paths": {
            "/vectorize": _post(
                "multi2vec-clip: texts and images to vectors",
                "VectorizeRequest",
                "VectorizeResponse",
                _errors(400, 401, 413, 500, 503),
            ),
            "/vectors": _post(
                "text2vec-transformers (text or texts) and img2vec-neural (image); also at /vectors/",
                "VectorsRequest",
                "VectorsResponse",
                _errors(400, 401, 413, 500, 503),
            ),
            "/v1/embeddings": _post(
                "OpenAI embeddings",
                "EmbeddingsRequest",
                "EmbeddingsResponse",
                _errors(400, 401, 413, 500, 503, schema="OpenAIError"),
            ),
            "/meta": {
                "get": {
                    "summary": "The model and the runtime",
                    "responses": {"200": _json(_ref("Meta"), "Model description"), **_errors(401, 503)},
                }
            },
            "/.well-known/live": {"get": {"summary": "Liveness", "responses": {"204": _EMPTY}}},
            "/.well-known/ready": {
                "get": {
                    "summary": "Readiness: model loaded and warmed up",
                    "responses": {"204": _EMPTY, **_errors(503)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(401),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": _json({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI 3.1 document")
                    },
                }
            },
        },
        "components": {"schemas": SCHEMAS},
    }


@functools.lru_cache(maxsize=1)
def openapi_body() -> bytes:
    return (json.dumps(build(), indent=2) + "\n").encode("utf-8")


if __name__ == "__main__":
    sys.stdout.write(openapi_body().decode("utf-8"))
