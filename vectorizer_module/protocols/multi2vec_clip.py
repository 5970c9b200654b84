"""Weaviate's multi2vec-clip wire format: parse and validate the JSON in, build the JSON out.

Request: ``{"texts": [str, ...], "images": [base64 str, ...]}``; a missing (or null) key is an empty
list and unknown keys are ignored, as Weaviate sends ``omitempty`` bodies. Response:
``{"textVectors": [[float, ...], ...], "imageVectors": [...]}`` with both keys always present.
Every body we write, errors included, is strict JSON (``common.dumps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vectorizer_module.config import Settings
from vectorizer_module.errors import BadInput, TooLarge
from vectorizer_module.protocols.common import (
    check_unicode,
    decode_base64_image,
    describe,
    dumps,
    float_rows,
    parse_json_object,
    plain_error_body,
)

# the paths of Weaviate's multi2vec-clip module protocol; errors there (and on any path no protocol owns,
# protocols/owners.py) are Weaviate's plain {"error": "..."}
PATHS = ("/vectorize", "/meta", "/.well-known/live", "/.well-known/ready")
error_body = plain_error_body


@dataclass(frozen=True)
class VectorizeRequest:
    texts: list[str]
    images: list[bytes]


def _string_list(payload: dict[str, Any], key: str, max_items: int, setting: str) -> list[str]:
    value = payload.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadInput(f"'{key}' must be an array of strings, got {describe(value)}", reason="wrong_type")
    if len(value) > max_items:
        raise TooLarge(
            f"'{key}' has {len(value)} items, above the limit of {max_items} per request; send "
            f"fewer per request or raise {setting}",
            reason="too_many_items",
        )
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise BadInput(f"{key}[{index}] must be a string, got {describe(item)}", reason="wrong_type")
        check_unicode(item, f"{key}[{index}]")
    return value


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


def vectorize_response(text_vectors: np.ndarray, image_vectors: np.ndarray) -> bytes:
    return dumps(
        {
            "textVectors": float_rows(text_vectors, "texts"),
            "imageVectors": float_rows(image_vectors, "images"),
        }
    )
