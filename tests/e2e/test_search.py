"""Queries go through our service: Weaviate's rankings are the ones computed locally from its vectors."""

from __future__ import annotations

import numpy as np
import pytest

from plugin_api.images import ImageItem, content_uuid
from plugin_api.importer import import_images
from plugin_api.schema import create_image_collection
from plugin_api.search import Move, hybrid, near_image, near_text
from tests.e2e.helpers import (
    assert_ranked_by,
    cosine_distances,
    image_vector,
    move_away,
    move_to,
    text_vector,
    vectorize,
)
from tests.media import encode, photo

CAPTIONS = [
    "harbour at dawn",
    "market street",
    "mountain lake",
    "city at night",
    "forest path",
    "desert road",
    "harbour cranes",
    "snowy field",
    "beach umbrellas",
    "old library",
]


@pytest.fixture(scope="module")
def gallery(stack, client):
    """Ten photos with captions (image-only vectors), and their vectors computed by the service directly."""
    name = "T_search_gallery"
    if client.collections.exists(name):
        client.collections.delete(name)
    collection = create_image_collection(client, name)
    images = [encode(photo(seed=100 + i), "PNG") for i in range(len(CAPTIONS))]
    items = [ImageItem.from_bytes(d, f"g{i}", caption=c) for i, (d, c) in enumerate(zip(images, CAPTIONS))]
    report = import_images(collection, items, progress=False)
    assert report.stored == len(images), report.details()
    vectors = vectorize(stack.service.url, images=images)[1]
    stored = {content_uuid(d): v for d, v in zip(images, vectors)}
    yield collection, images, stored
    client.collections.delete(name)


def test_near_image_with_a_stored_image_finds_itself_first(gallery):
    collection, images, _ = gallery
    for data in images[:4]:
        hits = near_image(collection, data, limit=3)
        assert hits[0].uuid == content_uuid(data)
        assert hits[0].distance == pytest.approx(0.0, abs=1e-5)
        assert hits[1].distance > hits[0].distance


def test_near_image_from_a_file_path(gallery, tmp_path):
    collection, images, _ = gallery
    path = tmp_path / "query.png"
    path.write_bytes(images[5])
    assert near_image(collection, str(path), limit=1)[0].uuid == content_uuid(images[5])
    with pytest.raises(FileNotFoundError):
        near_image(collection, str(tmp_path / "missing.png"))


@pytest.mark.parametrize("query", ["a harbour", "night", "a long query about a quiet mountain lake at noon"])
def test_near_text_order_is_the_order_of_the_services_text_vector(stack, gallery, query):
    collection, _, stored = gallery
    hits = near_text(collection, query, limit=len(stored))
    assert_ranked_by(hits, cosine_distances(text_vector(stack.service.url, query), stored))


def test_near_text_with_several_concepts_uses_their_mean(stack, gallery):
    collection, _, stored = gallery
    concepts = ["harbour", "snow"]
    texts = vectorize(stack.service.url, texts=concepts)[0]
    hits = near_text(collection, concepts, limit=len(stored))
    assert_ranked_by(hits, cosine_distances(texts.mean(axis=0), stored))


def _changed(before: dict[str, float], after: dict[str, float]) -> bool:
    return sorted(before, key=before.get) != sorted(after, key=after.get)


@pytest.mark.parametrize(
    "direction, force, targets",
    [
        ("move_to", 0.9, ["snowy field", "old books", "sand", "a dark street"]),
        ("move_away", 1.5, ["harbour cranes", "water", "boats", "a city"]),
    ],
)
def test_moving_relative_to_concepts(stack, gallery, direction, force, targets):
    collection, _, stored = gallery
    formula = {"move_to": move_to, "move_away": move_away}[direction]
    query = "a harbour"
    source = text_vector(stack.service.url, query)
    # pick a target that changes the predicted ranking, so the check below has teeth
    for target_text in targets:
        expected = cosine_distances(formula(source, text_vector(stack.service.url, target_text), force), stored)
        if _changed(cosine_distances(source, stored), expected):
            break
    else:
        pytest.fail("no move target changes the ranking; pick others")
    move = Move(force=force, concepts=[target_text])
    hits = near_text(collection, query, limit=len(stored), **{direction: move})
    assert_ranked_by(hits, expected)


def test_move_to_an_object_uses_its_stored_vector(stack, gallery):
    collection, images, stored = gallery
    query, force = "a harbour", 1.0
    target_uuid = content_uuid(images[7])
    expected = cosine_distances(move_to(text_vector(stack.service.url, query), stored[target_uuid], force), stored)
    hits = near_text(collection, query, limit=len(stored), move_to=Move(force=force, objects=[target_uuid]))
    assert_ranked_by(hits, expected)


def test_hybrid_vector_part_is_the_services_text_vector(stack, gallery):
    collection, _, stored = gallery
    query = "harbour"
    expected = cosine_distances(text_vector(stack.service.url, query), stored)
    vector_only = hybrid(collection, query, alpha=1.0, limit=len(stored))
    assert [h.uuid for h in vector_only] == [h.uuid for h in near_text(collection, query, limit=len(stored))]
    assert_ranked_by([h for h in vector_only], expected)


def test_hybrid_fuses_keyword_and_vector_scores(stack, gallery):
    collection, images, stored = gallery
    query = "harbour"
    keyword_hits = {content_uuid(images[i]) for i, c in enumerate(CAPTIONS) if query in c}
    keyword_only = hybrid(collection, query, alpha=0.0, limit=len(stored))
    assert {h.uuid for h in keyword_only[: len(keyword_hits)]} == keyword_hits
    # alpha 0.5: the best-scored object is either a keyword match or the vector's best match
    vector_best = min(cosine_distances(text_vector(stack.service.url, query), stored).items(), key=lambda kv: kv[1])[0]
    fused = hybrid(collection, query, alpha=0.5, limit=len(stored))
    assert fused[0].uuid in keyword_hits | {vector_best}
    assert all(h.score is not None for h in fused)
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)


def test_search_returns_plain_dataclasses_with_vectors_on_request(stack, gallery):
    collection, images, stored = gallery
    hit = near_image(collection, images[2], limit=1, include_vector=True)[0]
    assert hit.properties["caption"] == CAPTIONS[2]
    assert "image" not in hit.properties  # blobs are not returned unless asked for
    np.testing.assert_allclose(hit.vector["default"], image_vector(stack.service.url, images[2]), atol=1e-6)
