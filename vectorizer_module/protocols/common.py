"""What every wire format shares: a JSON object in, base64 images, the Unicode check on texts, finite
vectors, and strict JSON out (NaN and Infinity are refused before they reach the wire, because Go's
decoder, Weaviate's, rejects them)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import numpy as np

from vectorizer_module.errors import BadInput, ModelFailure, TooLarge

_DATA_URI = re.compile(r"^data:([^,]*?);base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_BASE64_ALPHABET = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


def describe(value: Any) -> str:
    """The JSON type of ``value`` as a message names it ("a string", "null", ...)."""
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
        raise BadInput(f"request body must be a JSON object, got {describe(payload)}", reason="wrong_type")
    return payload


def check_unicode(text: str, label: str, param: str | None = None) -> None:
    """BadInput unless ``text`` can be written as UTF-8: JSON's ``\\ud800`` escapes can put an unpaired
    surrogate in a string, which no tokenizer takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(
            f"{label} is not valid Unicode: it contains an unpaired surrogate escape such as \\ud800",
            reason="invalid_text",
            param=param,
        ) from None


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
    decoded = _plain_base64(text)
    if decoded is not None:
        if len(decoded) > max_bytes:
            raise _image_too_large(label, len(decoded), max_bytes)
        return decoded
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


def _plain_base64(text: str) -> bytes | None:
    """The bytes of standard, padded base64 with no line breaks (what Weaviate sends), in one pass of C
    code; None for anything else, which the cleaning path handles. The cleaning's regular expressions
    hold the GIL for about a millisecond per photo, while the probes wait on the event loop."""
    try:
        return base64.b64decode(text, validate=True) or None
    except (binascii.Error, ValueError):
        return None


def _image_too_large(label: str, size: int, max_bytes: int) -> TooLarge:
    return TooLarge(
        f"{label} is {size} bytes, above the limit of {max_bytes} bytes per image; raise "
        "VECTORIZER_MAX_IMAGE_BYTES to accept it",
        reason="image_bytes",
    )


def check_finite(vectors: np.ndarray, what: str | None = None) -> None:
    """ModelFailure if the model gave NaN or Infinity (``what``: for which inputs, in the message)."""
    if vectors.size and not np.isfinite(vectors).all():
        suffix = f" for {what}" if what else ""
        raise ModelFailure(f"the model produced non-finite values (NaN or Infinity){suffix}")


def float_rows(vectors: np.ndarray, what: str | None = None) -> list[list[float]]:
    """The vectors as lists of float32 values, after ``check_finite``."""
    check_finite(vectors, what)
    return vectors.astype(np.float32, copy=False).tolist()


def dumps(obj: Any) -> bytes:
    """Strict, compact JSON; raises ValueError on NaN or Infinity."""
    return json.dumps(obj, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def plain_error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    """``{"error": "..."}``: the error body Weaviate's modules read (its Go clients show the string)."""
    return dumps({"error": message})
