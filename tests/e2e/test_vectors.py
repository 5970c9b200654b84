"""The vectors Weaviate stores are exactly what our service returns, combined as Weaviate documents."""

from __future__ import annotations

import numpy as np
import pytest
from weaviate.classes.config import Configure, Multi2VecField

from plugin_api.images import ImageItem, content_uuid
from plugin_api.importer import import_images
from plugin_api.schema import clip_vectorizer, create_image_collection, image_properties
from tests.e2e.helpers import combine, cosine, image_vector, text_vector, vectorize
from tests.media import encode, photo


def _photos(count: int, offset: int = 0) -> list[bytes]:
    return [encode(photo(seed=offset + i), "PNG" if i % 2 else "JPEG") for i in range(count)]


def _stored(collection, uuid: str, name: str = "default") -> np.ndarray:
    obj = collection.query.fetch_object_by_id(uuid, include_vector=True)
    assert obj is not None, f"object {uuid} is not stored"
    return np.asarray(obj.vector[name], dtype=np.float32)


@pytest.mark.parametrize("legacy", [False, True], ids=["named-vector", "legacy-vectorizer"])
def test_stored_vector_is_the_services_image_vector(stack, client, collection_name, legacy):
    collection = create_image_collection(client, collection_name, legacy=legacy)
    images = _photos(4, offset=10)
    report = import_images(
        collection, [ImageItem.from_bytes(d, f"img{i}") for i, d in enumerate(images)], progress=False
    )
    assert (report.stored, report.failed) == (4, 0), report.details()
    expected = vectorize(stack.service.url, images=images)[1]
    for i, data in enumerate(images):
        stored = _stored(collection, content_uuid(data))
        assert cosine(stored, expected[i]) >= 0.99999
        # and it is that image's vector, not just any image's
        assert all(cosine(stored, expected[j]) < 0.999 for j in range(len(images)) if j != i)


def test_weighted_text_and_image_vector_is_weaviates_documented_combination(stack, client, collection_name):
    # "title" sorts after "caption"; weights are given in a different order than the fields are listed
    collection = create_image_collection(
        client,
        collection_name,
        text_properties=("title", "caption"),
        text_fields=["title", "caption"],
        weights={"title": 1.0, "image": 3.0, "caption": 0.5},
    )
    data = _photos(1, offset=20)[0]
    caption, title = "a grey gradient with noise", "Noise study"
    report = import_images(collection, [ImageItem.from_bytes(data, "p", caption=caption, title=title)], progress=False)
    assert report.stored == 1, report.details()
    texts, images = vectorize(stack.service.url, texts=[caption, title], images=[data])
    # Weaviate's order: text vectors of properties in alphabetical order (caption, title), then the image
    expected = combine([texts[0], texts[1], images[0]], [0.5, 1.0, 3.0])
    stored = _stored(collection, content_uuid(data))
    np.testing.assert_allclose(stored, expected, atol=2e-6)
    # no renormalisation: the combination of unit vectors is shorter than 1
    assert np.linalg.norm(stored) < 0.9


def test_weights_in_config_order_are_paired_by_position_not_by_name(stack, client, collection_name):
    """Why the helper sorts fields: written straight with the client in non-alphabetical order, Weaviate
    gives caption the weight meant for title (contract §1(c), here verified on the real server)."""
    collection = client.collections.create(
        collection_name,
        properties=image_properties(text_properties=("caption", "title")),
        vector_config=Configure.Vectors.multi2vec_clip(
            image_fields=[Multi2VecField(name="image", weight=1.0)],
            text_fields=[Multi2VecField(name="title", weight=6.0), Multi2VecField(name="caption", weight=1.0)],
        ),
    )
    data = _photos(1, offset=30)[0]
    caption, title = "first text", "second text"
    import_images(collection, [ImageItem.from_bytes(data, "p", caption=caption, title=title)], progress=False)
    texts, images = vectorize(stack.service.url, texts=[caption, title], images=[data])
    stored = _stored(collection, content_uuid(data))
    as_meant = combine([texts[0], texts[1], images[0]], [1.0, 6.0, 1.0])
    as_applied = combine([texts[0], texts[1], images[0]], [6.0, 1.0, 1.0])
    np.testing.assert_allclose(stored, as_applied, atol=2e-6)
    assert np.abs(stored - as_meant).max() > 1e-3


def test_text_array_property_gives_one_text_vector_per_element(stack, client, collection_name):
    collection = create_image_collection(
        client, collection_name, text_properties=(), text_array_properties=("tags",), text_fields=["tags"]
    )
    data = _photos(1, offset=40)[0]
    tags = ["outdoor", "noise", "gradient"]
    report = import_images(collection, [ImageItem.from_bytes(data, "p", tags=tags)], progress=False)
    assert report.stored == 1, report.details()
    texts, images = vectorize(stack.service.url, texts=tags, images=[data])
    expected = combine([*texts, images[0]])  # unweighted: the plain mean of 3 + 1 vectors
    np.testing.assert_allclose(_stored(collection, content_uuid(data)), expected, atol=2e-6)


def test_named_vectors_with_a_per_collection_inference_url(stack, second_service, client, collection_name):
    properties = image_properties(text_properties=("caption",))
    collection = client.collections.create(
        collection_name,
        properties=properties,
        vector_config=[
            clip_vectorizer(name="picture", image_fields=["image"], properties=properties),
            clip_vectorizer(
                name="words", text_fields=["caption"], inference_url=second_service.url, properties=properties
            ),
        ],
    )
    images = _photos(3, offset=50)
    captions = ["a quiet harbour", "a loud market", "an empty road"]
    items = [ImageItem.from_bytes(d, f"p{i}", caption=c) for i, (d, c) in enumerate(zip(images, captions))]
    assert import_images(collection, items, progress=False).stored == 3
    for data, caption in zip(images, captions):
        uuid = content_uuid(data)
        picture, words = _stored(collection, uuid, "picture"), _stored(collection, uuid, "words")
        assert cosine(picture, image_vector(stack.service.url, data)) >= 0.99999
        theirs, ours = text_vector(second_service.url, caption), text_vector(stack.service.url, caption)
        assert cosine(words, theirs) >= 0.99999  # the second instance (other model) served it
        assert cosine(ours, theirs) < 0.99  # and it could not have been the first one
