"""One service behind Weaviate's text-only (text2vec-transformers) and image-only (img2vec-neural)
modules as well: both speak ``POST /vectors`` to it, and the vectors they store and search with are the
ones ``/vectorize`` gives for the same text or image."""

from __future__ import annotations

import numpy as np
from weaviate.classes.config import Configure, DataType, Property
from weaviate.classes.query import MetadataQuery

from plugin_api.images import to_base64
from tests.e2e.helpers import cosine, vectorize
from tests.media import encode, photo

CAPTIONS = ["a red circle", "a blue square on a white background", "two yellow stars"]


def _collection(client, name: str):
    # no collection or property name in the text, lower-case captions: Weaviate then sends the caption itself
    return client.collections.create(
        name,
        properties=[
            Property(name="caption", data_type=DataType.TEXT, vectorize_property_name=False),
            Property(name="image", data_type=DataType.BLOB),
        ],
        vectorizer_config=[
            Configure.NamedVectors.text2vec_transformers(
                "text", source_properties=["caption"], vectorize_collection_name=False
            ),
            Configure.NamedVectors.img2vec_neural("picture", image_fields=["image"]),
        ],
    )


def test_text_and_image_modules_store_the_services_vectors(stack, client, collection_name):
    collection = _collection(client, collection_name)
    images = [encode(photo(seed=40 + i), "JPEG") for i in range(len(CAPTIONS))]
    result = collection.data.insert_many([{"caption": c, "image": to_base64(d)} for c, d in zip(CAPTIONS, images)])
    assert not result.errors, result.errors
    texts, pictures = vectorize(stack.service.url, texts=CAPTIONS, images=images)
    for index, uuid in result.uuids.items():
        stored = collection.query.fetch_object_by_id(uuid, include_vector=True).vector
        np.testing.assert_array_equal(np.asarray(stored["text"], dtype=np.float32), texts[index])
        np.testing.assert_array_equal(np.asarray(stored["picture"], dtype=np.float32), pictures[index])


def test_near_text_and_near_image_go_through_the_modules(stack, client, collection_name):
    collection = _collection(client, collection_name)
    images = [encode(photo(seed=50 + i), "PNG") for i in range(len(CAPTIONS))]
    result = collection.data.insert_many([{"caption": c, "image": to_base64(d)} for c, d in zip(CAPTIONS, images)])
    assert not result.errors, result.errors
    texts, _ = vectorize(stack.service.url, texts=CAPTIONS)
    query = "a red circle"
    found = collection.query.near_text(
        query, target_vector="text", limit=3, return_metadata=MetadataQuery(distance=True)
    )
    # the query vector is the service's: the ranking and distances are those of its text vector
    query_vector = texts[CAPTIONS.index(query)]
    expected = sorted(range(len(CAPTIONS)), key=lambda i: 1 - cosine(query_vector, texts[i]))
    assert [o.properties["caption"] for o in found.objects] == [CAPTIONS[i] for i in expected]
    assert found.objects[0].metadata.distance < 1e-5
    by_image = collection.query.near_image(
        to_base64(images[2]), target_vector="picture", limit=1, return_metadata=MetadataQuery(distance=True)
    )
    assert by_image.objects[0].properties["caption"] == CAPTIONS[2]
    assert by_image.objects[0].metadata.distance < 1e-5


def test_an_undecodable_image_fails_that_object_only(stack, client, collection_name):
    collection = _collection(client, collection_name)
    good = encode(photo(seed=60), "JPEG")
    result = collection.data.insert_many(
        [
            {"caption": "a good photo", "image": to_base64(good)},
            {"caption": "a broken file", "image": to_base64(b"not an image at all")},
        ]
    )
    assert list(result.errors) == [1]
    assert len(collection) == 1
