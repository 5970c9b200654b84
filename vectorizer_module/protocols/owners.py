"""Which protocol owns a path: each protocol module names its ``PATHS`` (a path, or a prefix ending in
``/``), and an error on a path comes back in its owner's shape (``error_body``). Paths no protocol owns
(``/metrics``, ``/openapi.json``, unknown ones) get the multi2vec-clip module's, the service's own."""

from __future__ import annotations

from types import ModuleType

from vectorizer_module.protocols import multi2vec_clip, openai, vectors

PROTOCOLS: tuple[ModuleType, ...] = (multi2vec_clip, openai, vectors)
DEFAULT = multi2vec_clip


def _owns(owned: str, path: str) -> bool:
    return path.startswith(owned) if owned.endswith("/") else (path.rstrip("/") or "/") == owned


def owner(path: str) -> ModuleType:
    """The protocol module that owns ``path`` (slashes already collapsed)."""
    return next((p for p in PROTOCOLS if any(_owns(owned, path) for owned in p.PATHS)), DEFAULT)


def error_body(path: str, status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    """The JSON error body in the shape of the protocol that owns ``path``."""
    return owner(path).error_body(status, message, param, code)
