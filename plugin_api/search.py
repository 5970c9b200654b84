"""near_text (with moves), near_image and hybrid queries, answered as plain dataclasses."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weaviate.classes.query import MetadataQuery, Move
from weaviate.collections import Collection
from weaviate.exceptions import WeaviateBaseError

from plugin_api.errors import SearchFailed
from plugin_api.images import to_base64

__all__ = ["Hit", "Move", "near_text", "near_image", "hybrid"]


@dataclass(frozen=True)
class Hit:
    """One result. ``distance`` is set for near_* queries, ``score`` for hybrid; ``vector`` (name ->
    vector) only when asked for. ``properties`` holds the non-blob properties unless others are asked for."""

    uuid: str
    distance: float | None
    score: float | None
    properties: dict[str, Any]
    vector: dict[str, list[float]] | None = None


def near_text(
    collection: Collection,
    query: str | Sequence[str],
    *,
    limit: int = 10,
    move_to: Move | None = None,
    move_away: Move | None = None,
    target_vector: str | None = None,
    include_vector: bool = False,
    return_properties: Sequence[str] | None = None,
) -> list[Hit]:
    """Objects nearest to the text (several texts: their mean). ``Move(force, concepts=..., objects=...)``
    shifts the query vector towards (``move_to``, force in [0, 1]) or away from (``move_away``) targets."""
    query_value = query if isinstance(query, str) else list(query)
    return _run(
        "near_text",
        collection,
        lambda: collection.query.near_text(
            query_value,
            limit=limit,
            move_to=move_to,
            move_away=move_away,
            target_vector=target_vector,
            include_vector=include_vector,
            return_properties=_props(return_properties),
            return_metadata=MetadataQuery(distance=True),
        ),
    )


def near_image(
    collection: Collection,
    image: str | os.PathLike[str] | bytes,
    *,
    limit: int = 10,
    target_vector: str | None = None,
    include_vector: bool = False,
    return_properties: Sequence[str] | None = None,
) -> list[Hit]:
    """Objects nearest to an image given as a file path or as bytes.

    A ``str`` is always a path here (the client would send any other string to Weaviate as if it were
    base64), so a typo gives ``FileNotFoundError`` rather than a confusing decode error from the service.
    """
    data = bytes(image) if isinstance(image, (bytes, bytearray, memoryview)) else Path(image).expanduser().read_bytes()
    encoded = to_base64(data)
    return _run(
        "near_image",
        collection,
        lambda: collection.query.near_image(
            encoded,
            limit=limit,
            target_vector=target_vector,
            include_vector=include_vector,
            return_properties=_props(return_properties),
            return_metadata=MetadataQuery(distance=True),
        ),
    )


def hybrid(
    collection: Collection,
    query: str,
    *,
    alpha: float = 0.5,
    limit: int = 10,
    query_properties: Sequence[str] | None = None,
    target_vector: str | None = None,
    include_vector: bool = False,
    return_properties: Sequence[str] | None = None,
) -> list[Hit]:
    """Keyword (BM25 over text properties) and vector (the query text through the CLIP service) search,
    fused; ``alpha`` = 1 is vector only, 0 keyword only."""
    return _run(
        "hybrid",
        collection,
        lambda: collection.query.hybrid(
            query,
            alpha=alpha,
            limit=limit,
            query_properties=list(query_properties) if query_properties else None,
            target_vector=target_vector,
            include_vector=include_vector,
            return_properties=_props(return_properties),
            return_metadata=MetadataQuery(score=True, distance=True),
        ),
    )


def _props(names: Sequence[str] | None) -> list[str] | None:
    return list(names) if names is not None else None


def _run(kind: str, collection: Collection, call: Callable[[], Any]) -> list[Hit]:
    try:
        response = call()
    except WeaviateBaseError as exc:
        message = " ".join(str(exc).split())
        raise SearchFailed(f"{kind} on {collection.name} failed: {message}") from exc
    hits = []
    for obj in response.objects:
        vector = {name: list(values) for name, values in obj.vector.items()} if _has_vector(obj) else None
        hits.append(
            Hit(
                uuid=str(obj.uuid),
                distance=obj.metadata.distance,
                score=obj.metadata.score,
                properties=dict(obj.properties),
                vector=vector,
            )
        )
    return hits


def _has_vector(obj: Any) -> bool:
    return bool(getattr(obj, "vector", None))
