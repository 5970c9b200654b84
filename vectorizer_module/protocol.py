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

from vectorizer_module.config import Settings
from vectorizer_module.errors import BadInput, ModelFailure, TooLarge

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
        raise BadInput(
            'request body is empty: expected a JSON object such as {"texts": ["a cat"]}', reason="invalid_json"
        )
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BadInput(f"request body is not valid JSON: {exc}", reason="invalid_json") from None
    except RecursionError:
        raise BadInput("request body is not usable JSON: nested too deeply", reason="invalid_json") from None
    if not isinstance(payload, dict):
        raise BadInput(f"request body must be a JSON object, got {_describe(payload)}", reason="wrong_type")
    return payload


def _string_list(payload: dict[str, Any], key: str, max_items: int, setting: str) -> list[str]:
    value = payload.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(f"'{key}' must be an array of strings, got {_describe(value)}", reason="wrong_type")
    if len(value) > max_items:
        raise TooLarge(
            f"'{key}' has {len(value)} items, above the limit of {max_items} per request; send "
            f"fewer per request or raise {setting}",
            reason="too_many_items",
        )
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise BadInput(f"{key}[{index}] must be a string, got {_describe(item)}", reason="wrong_type")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput(
                f"{key}[{index}] is not valid Unicode: it contains an unpaired surrogate escape such as \\ud800",
                reason="invalid_text",
            ) from None
    return value


def decode_base64_image(value: str, label: str, max_bytes: int) -> bytes:
    """Bytes of a base64 image string; accepts a ``data:image/...;base64,`` prefix, line breaks,
    URL-safe characters and missing padding, since nearImage queries reach us unchecked."""
    if len(value) // 4 * 3 > max_bytes * 1.5 + 1024:  # clearly too large: do not even clean it up
        raise _image_too_large(label, len(value) // 4 * 3, max_bytes)
    text = value.strip()
    match = _DATA_URI.match(text)
    if match:
        text = text[match.end() :]
    elif text.startswith("data:"):
        raise BadInput(
            f"{label} is a data URI without ';base64,': only base64 data URIs are accepted", reason="invalid_base64"
        )
    text = _WHITESPACE.sub("", text).replace("-", "+").replace("_", "/")
    if not text:
        raise BadInput(f"{label} is empty: expected a base64-encoded image", reason="empty_image")
    if not _BASE64_ALPHABET.match(text):
        bad = next(ch for ch in text.rstrip("=") if not (ch.isascii() and (ch.isalnum() or ch in "+/")))
        raise BadInput(
            f"{label} is not valid base64: character {bad!r} is not in the base64 alphabet", reason="invalid_base64"
        )
    text += "=" * (-len(text) % 4)
    if len(text) // 4 * 3 - text.count("=") > max_bytes:
        raise _image_too_large(label, len(text) // 4 * 3 - text.count("="), max_bytes)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput(f"{label} is not valid base64: {exc}", reason="invalid_base64") from None


def _image_too_large(label: str, size: int, max_bytes: int) -> TooLarge:
    return TooLarge(
        f"{label} is {size} bytes, above the limit of {max_bytes} bytes per image; raise "
        "VECTORIZER_MAX_IMAGE_BYTES to accept it",
        reason="image_bytes",
    )


def parse_vectorize(body: bytes, limits: Settings) -> VectorizeRequest:
    """The request in ``body``, checked against the limits in ``limits`` before any heavy work."""
    payload = parse_json_object(body)
    texts = _string_list(payload, "texts", limits.max_texts, "VECTORIZER_MAX_TEXTS")
    image_strings = _string_list(payload, "images", limits.max_images, "VECTORIZER_MAX_IMAGES")
    for index, text in enumerate(texts):
        if len(text) > limits.max_text_chars:
            raise TooLarge(
                f"texts[{index}] has {len(text)} characters, above the limit of "
                f"{limits.max_text_chars} (only the first 77 tokens count anyway); raise "
                "VECTORIZER_MAX_TEXT_CHARS to accept it",
                reason="text_length",
            )
    images = [decode_base64_image(s, f"images[{i}]", limits.max_image_bytes) for i, s in enumerate(image_strings)]
    return VectorizeRequest(texts=texts, images=images)


def dumps(obj: Any) -> bytes:
    """Strict, compact JSON; raises ValueError on NaN or Infinity."""
    return json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _vector_lists(vectors: np.ndarray, what: str) -> list[list[float]]:
    if vectors.size and not np.isfinite(vectors).all():
        raise ModelFailure(f"the model produced non-finite values (NaN or Infinity) for {what}")
    return vectors.astype(np.float32, copy=False).tolist()


def vectorize_response(text_vectors: np.ndarray, image_vectors: np.ndarray) -> bytes:
    return dumps(
        {
            "textVectors": _vector_lists(text_vectors, "texts"),
            "imageVectors": _vector_lists(image_vectors, "images"),
        }
    )


def error_body(message: str) -> bytes:
    return dumps({"error": message})
