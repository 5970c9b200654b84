"""Each path's errors take the shape of the protocol that owns it, as the protocol modules declare."""

import json

import pytest

from vectorizer_module.protocols import multi2vec_clip, openai, owners, vectors


@pytest.mark.parametrize(
    "path, protocol",
    [
        ("/vectorize", multi2vec_clip),
        ("/vectorize/", multi2vec_clip),
        ("/.well-known/ready", multi2vec_clip),
        ("/v1/embeddings", openai),
        ("/v1/models-that-do-not-exist", openai),
        ("/vectors", vectors),
        ("/vectors/", vectors),
        ("/vectorsx", multi2vec_clip),  # a path is owned whole, not by its first letters
        ("/v1", multi2vec_clip),  # only what is under OpenAI's base path
        ("/metrics", multi2vec_clip),
        ("/", multi2vec_clip),
    ],
)
def test_the_owner_of_a_path(path, protocol):
    assert owners.owner(path) is protocol


def test_error_bodies_follow_the_owner():
    openai_error = json.loads(owners.error_body("/v1/embeddings", 413, "too big", "input", "too_large"))
    assert openai_error["error"]["message"] == "too big" and openai_error["error"]["param"] == "input"
    assert json.loads(owners.error_body("/vectors", 413, "too big", "input", "too_large")) == {"error": "too big"}
    assert json.loads(owners.error_body("/nowhere", 404, "not found")) == {"error": "not found"}
