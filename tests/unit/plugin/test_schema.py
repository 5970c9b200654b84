"""The multi2vec-clip config helper: validation and field order (no server needed)."""

from __future__ import annotations

import math

import pytest
from weaviate.classes.config import DataType, Property

from plugin_api.errors import FieldConfigError
from plugin_api.schema import clip_fields, clip_vectorizer, image_properties

PROPS = image_properties(text_properties=("title", "caption", "alt"), text_array_properties=("tags",))


def _module(config) -> dict:
    """The multi2vec-clip JSON the client sends for a config (named or legacy)."""
    body = config._to_dict()
    return body["vectorizer"]["multi2vec-clip"] if "vectorizer" in body else body


def test_fields_are_written_in_alphabetical_order_with_their_own_weights():
    config = clip_vectorizer(
        image_fields=["image"],
        text_fields=["title", "caption", "alt"],
        weights={"title": 5.0, "image": 1.0, "caption": 3.0, "alt": 2.0},
        properties=PROPS,
    )
    module = _module(config)
    assert module["textFields"] == ["alt", "caption", "title"]
    assert module["weights"]["textFields"] == [2.0, 3.0, 5.0]
    assert module["imageFields"] == ["image"] and module["weights"]["imageFields"] == [1.0]


def test_order_follows_code_points_like_weaviates_sort():
    images, texts = clip_fields([], ["b", "B", "a_", "a", "Z9"])
    assert [f.name for f in texts] == sorted(["b", "B", "a_", "a", "Z9"]) == ["B", "Z9", "a", "a_", "b"]


def test_no_weights_means_no_weights_key():
    module = _module(clip_vectorizer(image_fields=["image"], text_fields=["caption"]))
    assert "weights" not in module


def test_named_vector_and_inference_url():
    body = clip_vectorizer(image_fields=["image"], name="picture", inference_url="http://127.0.0.1:9/")._to_dict()
    assert body["vectorizer"]["multi2vec-clip"]["inferenceUrl"] == "http://127.0.0.1:9/"
    assert clip_vectorizer(image_fields=["image"], name="picture").name == "picture"


def test_legacy_vectorizer():
    config = clip_vectorizer(
        image_fields=["image"],
        text_fields=["caption"],
        legacy=True,
        weights={"image": 1, "caption": 2},
        inference_url="http://127.0.0.1:9",
    )
    assert _module(config) == {
        "imageFields": ["image"],
        "textFields": ["caption"],
        "weights": {"imageFields": [1.0], "textFields": [2.0]},
        "inferenceUrl": "http://127.0.0.1:9",
    }
    with pytest.raises(FieldConfigError, match="legacy"):
        clip_vectorizer(image_fields=["image"], legacy=True, name="x")


@pytest.mark.parametrize(
    "weights, message",
    [
        ({"image": 1.0}, r"every field or for none; missing: \['caption'\]"),
        ({"image": 1.0, "caption": 1.0, "title": 1.0}, r"\['title'\], which are not image or text fields"),
        ({"image": 1.0, "caption": 0.0}, "positive"),
        ({"image": 1.0, "caption": -2.0}, "positive"),
        ({"image": 1.0, "caption": math.nan}, "positive"),
        ({"image": 1.0, "caption": math.inf}, "positive"),
        ({"image": 1.0, "caption": True}, "positive"),
        ({"image": 1.0, "caption": "1"}, "positive"),
    ],
)
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(FieldConfigError, match=message):
        clip_vectorizer(image_fields=["image"], text_fields=["caption"], weights=weights)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "at least one"),
        (dict(image_fields=["image", "image"]), "more than once"),
        (dict(image_fields=["image"], text_fields=["image"]), "both image and text"),
        (dict(image_fields="image"), "not the string"),
        (dict(text_fields=[""]), "non-empty"),
        (dict(image_fields=["photo"], properties=PROPS), "'photo' is not a property"),
        (dict(image_fields=["tags"], properties=PROPS), "image field 'tags' is a text\\[\\] property"),
        (dict(text_fields=["image"], properties=PROPS), "text field 'image' is a blob property"),
        (
            dict(image_fields=["image"], text_fields=["tags"], weights={"image": 1, "tags": 1}, properties=PROPS),
            "text\\[\\]",
        ),
        (dict(image_fields=["image"], inference_url="127.0.0.1:8080"), "http"),
    ],
)
def test_bad_fields_are_refused(kwargs, message):
    with pytest.raises(FieldConfigError, match=message):
        clip_vectorizer(**kwargs)


def test_text_array_without_weights_and_text_as_image_field_are_accepted():
    props = [*PROPS, Property(name="b64", data_type=DataType.TEXT)]
    module = _module(clip_vectorizer(image_fields=["b64", "image"], text_fields=["tags"], properties=props))
    assert module["imageFields"] == ["b64", "image"] and module["textFields"] == ["tags"]


def test_image_properties():
    props = image_properties("photo", ("caption",), ("tags",))
    assert [(p.name, DataType(p.dataType)) for p in props] == [
        ("photo", DataType.BLOB),
        ("caption", DataType.TEXT),
        ("tags", DataType.TEXT_ARRAY),
    ]


class _RecordingClient:
    """Just enough of a WeaviateClient for create_image_collection: records what it would create."""

    def __init__(self) -> None:
        self.created: list[dict] = []
        self.collections = self

    def exists(self, name: str) -> bool:
        return False

    def create(self, name: str, **kwargs):
        self.created.append({"name": name, **kwargs})
        return name


def test_keyword_names_are_the_clients_where_it_has_one():
    import inspect

    from weaviate.classes.config import Configure

    from plugin_api.schema import create_image_collection

    client_names = set(inspect.signature(Configure.Vectors.multi2vec_clip).parameters)
    ours = set(inspect.signature(clip_vectorizer).parameters) | set(
        inspect.signature(create_image_collection).parameters
    )
    # the vectorizer's own settings are spelt as the client spells them
    assert {"image_fields", "text_fields", "inference_url"} <= client_names & ours
    assert {"name", "vector_index_config"} <= set(inspect.signature(clip_vectorizer).parameters) & client_names

    client = _RecordingClient()
    create_image_collection(client, "C", text_fields=["caption"], weights={"image": 2, "caption": 1})
    module = _module(client.created[0]["vector_config"])
    assert module["textFields"] == ["caption"] and module["weights"]["textFields"] == [1.0]


def test_old_keyword_vectorize_text_still_works_with_a_deprecation_warning():
    from plugin_api.schema import create_image_collection

    client = _RecordingClient()
    with pytest.deprecated_call(match="text_fields"):
        create_image_collection(client, "Old", vectorize_text=["caption"])
    create_image_collection(client, "New", text_fields=["caption"])
    old, new = (_module(c["vector_config"]) for c in client.created)
    assert old == new and old["textFields"] == ["caption"]
    with pytest.raises(FieldConfigError, match="text_fields only"):
        create_image_collection(client, "Both", text_fields=["caption"], vectorize_text=["caption"])
