"""OpenAI's embeddings wire format (``POST /v1/embeddings``): parse the JSON in, build the JSON out.

Request: ``{"input": str | [str, ...], "model": str, "encoding_format": "float" | "base64",
"dimensions": int, "modality": "text" | "image"}``. ``input`` is always text unless ``modality`` is
``"image"``; then every item must be a base64 data URI (``data:image/png;base64,...``). A plain string
is never guessed to be an image. ``model`` is accepted and ignored (the answer names the served model),
so clients that insist on a model name work unchanged. ``dimensions`` must equal the model's dimension:
CLIP vectors are not Matryoshka vectors, so a prefix of one is not a usable smaller embedding.

Response: ``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}], "model":
name, "usage": {"prompt_tokens": n, "total_tokens": n}}``; ``embedding`` is a list of floats, or with
``encoding_format: "base64"`` the base64 of the vector's little-endian float32 bytes. ``prompt_tokens``
counts the text tower's tokens (after truncation to the context, special tokens included); images count 0.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from vectorizer_module.config import Settings
from vectorizer_module.errors import BadInput, TooLarge
from vectorizer_module.protocols.common import (
    check_finite,
    check_unicode,
    decode_base64_image,
    dumps,
    parse_json_object,
)

PATHS = ("/v1/",)  # OpenAI's base path: every route under it, unknown ones included, answers OpenAI clients
ENCODINGS = ("float", "base64")
MODALITIES = ("text", "image")

# OpenAI's error "type" for each HTTP status we answer with.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    503: "server_error",
}


@dataclass(frozen=True)
class EmbeddingsRequest:
    modality: str
    texts: list[str]
    images: list[bytes]
    encoding_format: str

    @property
    def count(self) -> int:
        return len(self.texts) + len(self.images)


def _input_list(value: Any) -> list[str]:
    if isinstance(value, str):
        check_unicode(value, "input", param="input")
        return [value]
    if not isinstance(value, list) or not value:
        raise BadInput("'input' must be a string or a non-empty array of strings", reason="wrong_type", param="input")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise BadInput(
                f"input[{index}] must be a string (token arrays are not accepted: send the text)",
                reason="wrong_type",
                param="input",
            )
        check_unicode(item, f"input[{index}]", param="input")
    return value


def parse_embeddings(body: bytes, limits: Settings, dimension: int) -> EmbeddingsRequest:
    """The request in ``body``, checked against ``limits`` and the served ``dimension``."""
    payload = parse_json_object(body)
    if "input" not in payload:
        raise BadInput("'input' is required: a string or an array of strings", reason="missing_input", param="input")
    items = _input_list(payload["input"])
    modality = payload.get("modality") or "text"
    if modality not in MODALITIES:
        raise BadInput(
            f"'modality' must be one of {', '.join(MODALITIES)}, got {modality!r}",
            reason="wrong_value",
            param="modality",
        )
    encoding = payload.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise BadInput(
            f"'encoding_format' must be one of {', '.join(ENCODINGS)}, got {encoding!r}",
            reason="wrong_value",
            param="encoding_format",
        )
    dimensions = payload.get("dimensions")
    if dimensions is not None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int):
            raise BadInput("'dimensions' must be an integer", reason="wrong_type", param="dimensions")
        if dimensions != dimension:
            raise BadInput(
                f"'dimensions' is {dimensions} but this model's vectors have {dimension}: CLIP "
                "vectors cannot be shortened (they are not Matryoshka embeddings); leave "
                f"'dimensions' out or set it to {dimension}",
                reason="dimensions",
                param="dimensions",
            )
    if modality == "text":
        if len(items) > limits.max_texts:
            raise TooLarge(
                f"'input' has {len(items)} texts, above the limit of {limits.max_texts} per request; "
                "raise VECTORIZER_MAX_TEXTS to accept it",
                reason="too_many_items",
                param="input",
            )
        for index, text in enumerate(items):
            if len(text) > limits.max_text_chars:
                raise TooLarge(
                    f"input[{index}] has {len(text)} characters, above the limit of "
                    f"{limits.max_text_chars}; raise VECTORIZER_MAX_TEXT_CHARS to accept it",
                    reason="text_length",
                    param="input",
                )
        return EmbeddingsRequest("text", items, [], encoding)
    if len(items) > limits.max_images:
        raise TooLarge(
            f"'input' has {len(items)} images, above the limit of {limits.max_images} per request; "
            "raise VECTORIZER_MAX_IMAGES to accept it",
            reason="too_many_items",
            param="input",
        )
    images = []
    for index, item in enumerate(items):
        if not item.lstrip()[:11].lower().startswith("data:image/"):
            raise BadInput(
                f"input[{index}] must be an image data URI ('data:image/...;base64,...') when 'modality' is 'image'",
                reason="invalid_image",
                param="input",
            )
        try:
            images.append(decode_base64_image(item, f"input[{index}]", limits.max_image_bytes))
        except (BadInput, TooLarge) as exc:
            exc.param = "input"
            raise
    return EmbeddingsRequest("image", [], images, encoding)


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype(np.float32).tolist()


def embeddings_response(vectors: np.ndarray, encoding: str, model: str, prompt_tokens: int) -> bytes:
    """The answer body; non-finite vectors are refused here, since base64 would hide them from ``dumps``."""
    check_finite(vectors)
    return dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _encode(row, encoding)}
                for i, row in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
    )


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})
