"""The embedding routes' work, from the request body to the response body: parse and check it with the
route's protocol, embed, encode the answer.

One function per protocol, all alike, so that the whole of it runs where the engine is: in a worker's
model process (``server/model_process.py``), whose lower CPU priority then covers the JSON, base64 and
encoding work as well, and the HTTP front's only Python work per request is HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vectorizer_module.admission import Cancelled, never_cancelled
from vectorizer_module.config import Settings
from vectorizer_module.protocols import multi2vec_clip, openai, vectors


class Embeds(Protocol):
    """What the routes need of an engine (``engine.Engine``)."""

    settings: Settings

    @property
    def dimension(self) -> int: ...

    @property
    def model_name(self) -> str: ...

    def embed(
        self,
        texts: Sequence[str],
        images: Sequence[bytes],
        *,
        deadline: float | None = None,
        cancelled: Cancelled = never_cancelled,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def token_counts(self, texts: Sequence[str]) -> list[int]: ...


@dataclass(frozen=True)
class Answer:
    """A response body, and the request's sizes for its access-log line."""

    body: bytes
    sizes: dict[str, int] = field(default_factory=dict)


def sizes(texts: Sequence[str], images: Sequence[bytes]) -> dict[str, int]:
    return {"texts": len(texts), "images": len(images), "image_bytes": sum(len(i) for i in images)}


def vectorize(engine: Embeds, body: bytes, deadline: float, cancelled: Cancelled) -> Answer:
    """Weaviate's multi2vec-clip ``POST /vectorize``."""
    parsed = multi2vec_clip.parse_vectorize(body, engine.settings)
    text_vectors, image_vectors = engine.embed(parsed.texts, parsed.images, deadline=deadline, cancelled=cancelled)
    return Answer(multi2vec_clip.vectorize_response(text_vectors, image_vectors), sizes(parsed.texts, parsed.images))


def openai_embeddings(engine: Embeds, body: bytes, deadline: float, cancelled: Cancelled) -> Answer:
    """OpenAI's ``POST /v1/embeddings``."""
    parsed = openai.parse_embeddings(body, engine.settings, engine.dimension)
    tokens = sum(engine.token_counts(parsed.texts))
    text_vectors, image_vectors = engine.embed(parsed.texts, parsed.images, deadline=deadline, cancelled=cancelled)
    found = text_vectors if parsed.modality == "text" else image_vectors
    response = openai.embeddings_response(found, parsed.encoding_format, engine.model_name, tokens)
    return Answer(response, sizes(parsed.texts, parsed.images))


def weaviate_vectors(engine: Embeds, body: bytes, deadline: float, cancelled: Cancelled) -> Answer:
    """Weaviate's text2vec-transformers / img2vec-neural ``POST /vectors``."""
    parsed = vectors.parse_vectors(body, engine.settings, engine.dimension)
    text_vectors, image_vectors = engine.embed(parsed.texts, parsed.images, deadline=deadline, cancelled=cancelled)
    found = image_vectors if parsed.kind == "image" else text_vectors
    return Answer(vectors.vectors_response(parsed, found, engine.dimension), sizes(parsed.texts, parsed.images))


ROUTES: dict[str, Callable[[Embeds, bytes, float, Cancelled], Answer]] = {
    "vectorize": vectorize,
    "openai_embeddings": openai_embeddings,
    "weaviate_vectors": weaviate_vectors,
}


def answer(
    engine: Embeds, route: str, body: bytes, *, deadline: float | None = None, cancelled: Cancelled = never_cancelled
) -> Answer:
    """The answer of ``route`` (a key of ``ROUTES``) to ``body``; the deadline defaults to now + the
    configured request deadline."""
    if deadline is None:
        deadline = time.monotonic() + engine.settings.request_deadline
    return ROUTES[route](engine, body, deadline, cancelled)
