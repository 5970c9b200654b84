"""multi2vec-clip collection configuration that Weaviate applies the way the user meant.

Weaviate builds an object's vector from its properties in alphabetical key order, text vectors first,
then image vectors, and pairs them by position with ``weights.textFields ++ weights.imageFields`` as
written in the config (contract §1(c)). So the fields are written here in alphabetical order, weights go
with every field or with none, and a weighted ``text[]`` field (several vectors, one weight) is refused:
on Weaviate v1.39.0 it fails the insert with ``panic occurred: runtime error: index out of range``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import weaviate
from weaviate.classes.config import Configure, DataType, Multi2VecField, Property
from weaviate.collections import Collection

from plugin_api.errors import FieldConfigError

VECTORIZER = "multi2vec-clip"
IMAGE_TYPES = (DataType.BLOB, DataType.TEXT)  # Weaviate sends any string property in imageFields
TEXT_TYPES = (DataType.TEXT, DataType.TEXT_ARRAY)


def clip_fields(
    image_fields: Sequence[str] = (),
    text_fields: Sequence[str] = (),
    *,
    weights: Mapping[str, float] | None = None,
    properties: Sequence[Property] | None = None,
) -> tuple[list[Multi2VecField], list[Multi2VecField]]:
    """Validated ``(image_fields, text_fields)`` as client ``Multi2VecField`` lists, each sorted by name.

    ``weights`` maps every field name to a positive weight (or is None: plain mean). With ``properties``,
    every field must be one of them, of a type Weaviate vectorises for that role.
    """
    images, texts = _names("image_fields", image_fields), _names("text_fields", text_fields)
    if not images and not texts:
        raise FieldConfigError("give at least one image field or text field")
    both = sorted(set(images) & set(texts))
    if both:
        raise FieldConfigError(f"{both} listed as both image and text fields; list each field once")
    if properties is not None:
        _check_properties(images, texts, properties, weighted=weights is not None)
    if weights is not None:
        _check_weights(images + texts, weights)

    def fields(names: list[str]) -> list[Multi2VecField]:
        return [Multi2VecField(name=n, weight=None if weights is None else float(weights[n])) for n in sorted(names)]

    return fields(images), fields(texts)


def clip_vectorizer(
    *,
    image_fields: Sequence[str] = (),
    text_fields: Sequence[str] = (),
    weights: Mapping[str, float] | None = None,
    inference_url: str | None = None,
    name: str | None = None,
    properties: Sequence[Property] | None = None,
    legacy: bool = False,
    vector_index_config: Any = None,
) -> Any:
    """The client's multi2vec-clip vector config, validated (see :func:`clip_fields`).

    Default: ``Configure.Vectors.multi2vec_clip`` for ``vector_config=`` (a named vector; ``name=None``
    is Weaviate's ``"default"``). ``legacy=True``: the single class-level vectorizer,
    ``Configure.Vectorizer.multi2vec_clip``, for the deprecated ``vectorizer_config=``.
    ``inference_url`` sends this collection's ``/vectorize`` calls to another service instance.
    """
    images, texts = clip_fields(image_fields, text_fields, weights=weights, properties=properties)
    if inference_url is not None and not inference_url.startswith(("http://", "https://")):
        raise FieldConfigError(f"inference_url must be an http(s) URL, not {inference_url!r}")
    if legacy:
        if name is not None or vector_index_config is not None:
            raise FieldConfigError("a legacy (class-level) vectorizer has no name or own vector index config")
        return Configure.Vectorizer.multi2vec_clip(
            image_fields=images or None, text_fields=texts or None, inference_url=inference_url
        )
    return Configure.Vectors.multi2vec_clip(
        name=name,
        image_fields=images or None,
        text_fields=texts or None,
        inference_url=inference_url,
        vector_index_config=vector_index_config,
    )


def image_properties(
    image_property: str = "image",
    text_properties: Sequence[str] = ("caption", "filename"),
    text_array_properties: Sequence[str] = (),
) -> list[Property]:
    """Properties of an image collection: one ``blob`` for the image, ``text`` and ``text[]`` metadata."""
    return (
        [Property(name=image_property, data_type=DataType.BLOB)]
        + [Property(name=n, data_type=DataType.TEXT) for n in text_properties]
        + [Property(name=n, data_type=DataType.TEXT_ARRAY) for n in text_array_properties]
    )


def create_image_collection(
    client: weaviate.WeaviateClient,
    name: str,
    *,
    image_property: str = "image",
    text_properties: Sequence[str] = ("caption", "filename"),
    text_array_properties: Sequence[str] = (),
    text_fields: Sequence[str] = (),
    weights: Mapping[str, float] | None = None,
    inference_url: str | None = None,
    vector_name: str | None = None,
    legacy: bool = False,
    exist_ok: bool = False,
    vectorize_text: Sequence[str] | None = None,
) -> Collection:
    """Create (or, with ``exist_ok``, open) a collection of images with text metadata, in one call.

    The image is always vectorised; ``text_fields`` names the text properties that join it in the
    object's vector (by default none: captions and file names are stored and keyword-searchable, as in
    hybrid search, but do not move the image's vector). Keyword names follow the client's
    ``Configure.Vectors.multi2vec_clip`` (``text_fields``, ``inference_url``); ``vector_name`` is its
    ``name``, renamed here because ``name`` is the collection's. ``vectorize_text`` is the old name of
    ``text_fields`` (deprecated).
    """
    if vectorize_text is not None:
        if text_fields:
            raise FieldConfigError("give text_fields only (vectorize_text is its old name)")
        warnings.warn(
            "create_image_collection(vectorize_text=...) is deprecated; use text_fields=...",
            DeprecationWarning,
            stacklevel=2,
        )
        text_fields = vectorize_text
    if exist_ok and client.collections.exists(name):
        return client.collections.get(name)
    properties = image_properties(image_property, text_properties, text_array_properties)
    config = clip_vectorizer(
        image_fields=[image_property],
        text_fields=text_fields,
        weights=weights,
        inference_url=inference_url,
        name=vector_name,
        properties=properties,
        legacy=legacy,
    )
    if legacy:
        return client.collections.create(name, properties=properties, vectorizer_config=config)
    return client.collections.create(name, properties=properties, vector_config=config)


def weighted_fields(collection: Collection) -> set[str]:
    """Fields of every weighted multi2vec-clip vectorizer of ``collection``.

    An object that lacks one of them shifts Weaviate's weight/vector pairing (a missing caption would
    give the image the caption's weight), so the importer refuses such objects.
    """
    config = collection.config.get()
    modules: list[Mapping[str, Any]] = []
    legacy = config.vectorizer_config
    if legacy is not None and str(getattr(legacy.vectorizer, "value", legacy.vectorizer)) == VECTORIZER:
        modules.append(legacy.model or {})
    for named in (config.vector_config or {}).values():
        vectorizer = named.vectorizer
        if str(getattr(vectorizer.vectorizer, "value", vectorizer.vectorizer)) == VECTORIZER:
            modules.append(vectorizer.model or {})
    fields: set[str] = set()
    for module in modules:
        if module.get("weights"):
            fields.update(module.get("imageFields") or [])
            fields.update(module.get("textFields") or [])
    return fields


def _names(label: str, names: Sequence[str]) -> list[str]:
    if isinstance(names, str):
        raise FieldConfigError(f"{label} must be a list of property names, not the string {names!r}")
    out = list(names)
    for n in out:
        if not isinstance(n, str) or not n:
            raise FieldConfigError(f"{label} holds {n!r}; each entry must be a non-empty property name")
    duplicates = sorted({n for n in out if out.count(n) > 1})
    if duplicates:
        raise FieldConfigError(f"{label} lists {duplicates} more than once")
    return out


def _check_weights(fields: list[str], weights: Mapping[str, float]) -> None:
    missing = [f for f in sorted(fields) if f not in weights]
    if missing:
        raise FieldConfigError(f"weights must be given for every field or for none; missing: {missing}")
    extra = sorted(set(weights) - set(fields))
    if extra:
        raise FieldConfigError(f"weights given for {extra}, which are not image or text fields")
    for field in sorted(fields):
        weight = weights[field]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise FieldConfigError(f"weight of {field!r} is {weight!r}; weights must be positive finite numbers")


def _check_properties(images: list[str], texts: list[str], properties: Sequence[Property], *, weighted: bool) -> None:
    types = {p.name: DataType(p.dataType) for p in properties}
    for role, names, allowed in (("image", images, IMAGE_TYPES), ("text", texts, TEXT_TYPES)):
        for field in names:
            if field not in types:
                raise FieldConfigError(f"{role} field {field!r} is not a property (properties: {sorted(types)})")
            if types[field] not in allowed:
                raise FieldConfigError(
                    f"{role} field {field!r} is a {types[field].value} property; "
                    f"{role} fields must be {' or '.join(t.value for t in allowed)}"
                )
            if weighted and types[field] == DataType.TEXT_ARRAY:
                raise FieldConfigError(
                    f"text field {field!r} is text[]: each element becomes its own vector but has no weight "
                    f"of its own, so Weaviate cannot apply weights (drop the weights or make it text)"
                )
