"""Weaviate's ``POST /vectors`` modules: ``text2vec-transformers`` and ``img2vec-neural``, told apart by
the body's keys.

- ``{"image": "<base64>", "id": "..."}`` (img2vec-neural) → ``{"id", "vector", "dim"}``.
- ``{"text": "...", "config": {...}}`` (text2vec-transformers) → ``{"text", "vector", "dim", "dims"}``:
  the reference container writes ``dim``, Weaviate's current Go client reads ``dims``, so both are sent.
- ``{"texts": [...], "config": {...}}`` (text2vec-transformers' newer batch call) → ``{"vectors", "dims"}``.

``config.pooling_strategy`` and ``config.task_type`` are accepted and ignored (a CLIP text tower has one
projection, and queries and passages go through the same tower); ``config.dimensions`` must be absent or
equal to the model's dimension. A body with both ``image`` and a text key is refused rather than guessed.
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
    dumps,
    float_rows,
    parse_json_object,
    plain_error_body,
)

PATHS = ("/vectors",)
error_body = plain_error_body  # Weaviate's modules read {"error": "..."}

_TEXT_KEYS = ("text", "texts")


@dataclass(frozen=True)
class VectorsRequest:
    kind: str  # "image", "text" or "texts"
    texts: list[str]
    images: list[bytes]
    id: str = ""


def _text(value: Any, label: str, limits: Settings) -> str:
    if not isinstance(value, str):
        raise BadInput(f"'{label}' must be a string", reason="wrong_type")
    check_unicode(value, f"'{label}'")
    if len(value) > limits.max_text_chars:
        raise TooLarge(
            f"'{label}' has {len(value)} characters, above the limit of {limits.max_text_chars}; "
            "raise VECTORIZER_MAX_TEXT_CHARS to accept it",
            reason="text_length",
        )
    return value


def _check_config(config: Any, dimension: int) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise BadInput("'config' must be an object", reason="wrong_type")
    wanted = config.get("dimensions")
    if wanted is not None and wanted != dimension:
        raise BadInput(
            f"config.dimensions is {wanted!r} but this model's vectors have {dimension}: CLIP "
            "vectors cannot be shortened; leave it out",
            reason="dimensions",
        )


def parse_vectors(body: bytes, limits: Settings, dimension: int) -> VectorsRequest:
    """The request in ``body``: an image (img2vec-neural), a text or a batch of texts (text2vec-transformers)."""
    payload = parse_json_object(body)
    has_image = payload.get("image") is not None
    text_keys = [key for key in _TEXT_KEYS if payload.get(key) is not None]
    if has_image and text_keys:
        raise BadInput(
            f"the body has both 'image' and '{text_keys[0]}': send one image "
            "(img2vec-neural) or text (text2vec-transformers) per request",
            reason="ambiguous",
        )
    if has_image:
        identifier = payload.get("id") or ""
        if not isinstance(identifier, str):
            raise BadInput("'id' must be a string", reason="wrong_type")
        image = payload["image"]
        if not isinstance(image, str):
            raise BadInput("'image' must be a base64 string", reason="wrong_type")
        return VectorsRequest("image", [], [decode_base64_image(image, "image", limits.max_image_bytes)], identifier)
    if not text_keys:
        raise BadInput(
            "the body needs 'text' (or 'texts') for text2vec-transformers or 'image' for img2vec-neural",
            reason="missing_input",
        )
    if len(text_keys) > 1:
        raise BadInput("send either 'text' or 'texts', not both", reason="ambiguous")
    _check_config(payload.get("config"), dimension)
    if text_keys[0] == "text":
        return VectorsRequest("text", [_text(payload["text"], "text", limits)], [])
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise BadInput("'texts' must be an array of strings", reason="wrong_type")
    if len(texts) > limits.max_texts:
        raise TooLarge(
            f"'texts' has {len(texts)} items, above the limit of {limits.max_texts} per request; "
            "raise VECTORIZER_MAX_TEXTS to accept it",
            reason="too_many_items",
        )
    return VectorsRequest("texts", [_text(t, f"texts[{i}]", limits) for i, t in enumerate(texts)], [])


def vectors_response(request: VectorsRequest, vectors: np.ndarray, dimension: int) -> bytes:
    rows = float_rows(vectors)
    if request.kind == "image":
        return dumps({"id": request.id, "vector": rows[0], "dim": dimension})
    if request.kind == "text":
        return dumps({"text": request.texts[0], "vector": rows[0], "dim": dimension, "dims": dimension})
    return dumps({"vectors": rows, "dims": dimension})
