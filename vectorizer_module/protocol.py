"""Weaviate's multi2vec-clip wire format: parse and validate the JSON in, build the JSON out.

Request: ``{"texts": [str, ...], "images": [base64 str, ...]}``; a missing (or null) key is an empty
list and unknown keys are ignored, as Weaviate sends ``omitempty`` bodies. Response:
``{"textVectors": [[float, ...], ...], "imageVectors": [...]}`` with both keys always present.
Every body we write, errors included, is strict JSON: NaN and Infinity are refused before they reach
the wire, because Go's decoder (Weaviate) rejects them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from vectorizer_module.errors import BadInput, ModelFailure

_DATA_URI = re.compile(r"^data:([^,]*?);base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_BASE64_ALPHABET = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


@dataclass(frozen=True)
class VectorizeRequest:
    texts: list[str]
    images: list[bytes]


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or BadInput saying why it is not one."""
    if not body:
        raise BadInput("request body is empty: expected a JSON object such as {\"texts\": [\"a cat\"]}")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BadInput(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadInput("request body is not usable JSON: nested too deeply") from None
    if not isinstance(payload, dict):
        raise BadInput(f"request body must be a JSON object, got {_describe(payload)}")
    return payload


def _string_list(payload: dict[str, Any], key: str) -> list[str]:
    value = payload.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(f"'{key}' must be an array of strings, got {_describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise BadInput(f"{key}[{index}] must be a string, got {_describe(item)}")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput(f"{key}[{index}] is not valid Unicode: it contains an unpaired surrogate "
                           "escape such as \\ud800") from None
    return value


def decode_base64_image(value: str, label: str) -> bytes:
    """Bytes of a base64 image string; accepts a ``data:image/...;base64,`` prefix, line breaks,
    URL-safe characters and missing padding, since nearImage queries reach us unchecked."""
    text = value.strip()
    match = _DATA_URI.match(text)
    if match:
        text = text[match.end():]
    elif text.startswith("data:"):
        raise BadInput(f"{label} is a data URI without ';base64,': only base64 data URIs are accepted")
    text = _WHITESPACE.sub("", text).replace("-", "+").replace("_", "/")
    if not text:
        raise BadInput(f"{label} is empty: expected a base64-encoded image")
    if not _BASE64_ALPHABET.match(text):
        bad = next(ch for ch in text.rstrip("=") if not (ch.isascii() and (ch.isalnum() or ch in "+/")))
        raise BadInput(f"{label} is not valid base64: character {bad!r} is not in the base64 alphabet")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput(f"{label} is not valid base64: {exc}") from None


def parse_vectorize(body: bytes) -> VectorizeRequest:
    payload = parse_json_object(body)
    texts = _string_list(payload, "texts")
    image_strings = _string_list(payload, "images")
    images = [decode_base64_image(s, f"images[{i}]") for i, s in enumerate(image_strings)]
    return VectorizeRequest(texts=texts, images=images)


def dumps(obj: Any) -> bytes:
    """Strict, compact JSON; raises ValueError on NaN or Infinity."""
    return json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _vector_lists(vectors: np.ndarray, what: str) -> list[list[float]]:
    if vectors.size and not np.isfinite(vectors).all():
        raise ModelFailure(f"the model produced non-finite values (NaN or Infinity) for {what}")
    return vectors.astype(np.float32, copy=False).tolist()


def vectorize_response(text_vectors: np.ndarray, image_vectors: np.ndarray) -> bytes:
    return dumps({
        "textVectors": _vector_lists(text_vectors, "texts"),
        "imageVectors": _vector_lists(image_vectors, "images"),
    })


def error_body(message: str) -> bytes:
    return dumps({"error": message})
