"""The other wire formats over real HTTP against the server subprocess: OpenAI's embeddings (through the
official ``openai`` client) and Weaviate's ``/vectors`` modules (text2vec-transformers, img2vec-neural).
Every vector is compared with what ``/vectorize`` answers for the same input."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tests import media
from tests.reference import strict_json

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    positions = AutoConfig.from_pretrained(str(tiny_model)).text_config.max_position_embeddings
    return tok, min(tok.model_max_length, positions)


def clip_vectors(server, texts=(), images=()) -> dict:
    response = server.post("/vectorize", {"texts": list(texts), "images": list(images)})
    assert response.status_code == 200, response.text
    return response.json()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


# -- /v1/embeddings through the official client -----------------------------------------------------


def test_openai_client_text_vectors_equal_vectorize(server, client, tokenizer):
    texts = ["a photo of a cat", "a red circle", "ünïcödé ✓"]
    result = client.embeddings.create(model="whatever-name", input=texts, encoding_format="float")
    expected = clip_vectors(server, texts)["textVectors"]
    assert [d.index for d in result.data] == [0, 1, 2]
    np.testing.assert_array_equal(
        np.array([d.embedding for d in result.data], dtype=np.float32), np.array(expected, dtype=np.float32)
    )
    served = server.get("/meta").json()["clip-vectorizer"]["model"]["name"]
    assert result.model == served  # the served model, not the asked one
    tok, max_length = tokenizer
    counts = [len(tok(t, truncation=True, max_length=max_length)["input_ids"]) for t in texts]
    assert result.usage.prompt_tokens == result.usage.total_tokens == sum(counts)


def test_openai_client_default_base64_decodes_to_the_same_vectors(server, client):
    result = client.embeddings.create(model="m", input="a blue square")  # the client asks for base64 itself
    expected = np.array(clip_vectors(server, ["a blue square"])["textVectors"][0], dtype=np.float32)
    np.testing.assert_array_equal(np.array(result.data[0].embedding, dtype=np.float32), expected)


def test_raw_base64_is_little_endian_float32(server):
    response = server.post("/v1/embeddings", {"input": "x", "encoding_format": "base64"})
    assert response.status_code == 200, response.text
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    vector = np.frombuffer(raw, dtype="<f4")
    np.testing.assert_array_equal(vector, np.array(clip_vectors(server, ["x"])["textVectors"][0], dtype=np.float32))


def test_long_text_tokens_are_counted_after_truncation(server, tokenizer):
    _, max_length = tokenizer
    body = server.post("/v1/embeddings", {"input": ["word " * 500]}).json()
    assert body["usage"]["prompt_tokens"] == max_length


def test_images_as_data_uris_with_modality_image(server, client):
    pngs = [media.encode(media.photo(seed=s), "PNG") for s in (1, 2)]
    result = client.embeddings.create(
        model="m", input=[data_uri(p) for p in pngs], encoding_format="float", extra_body={"modality": "image"}
    )
    expected = clip_vectors(server, images=[media.b64(p) for p in pngs])["imageVectors"]
    np.testing.assert_array_equal(
        np.array([d.embedding for d in result.data], dtype=np.float32), np.array(expected, dtype=np.float32)
    )
    assert result.usage.prompt_tokens == 0


def test_a_data_uri_without_modality_is_embedded_as_text(server):
    uri = data_uri(media.encode(media.photo(), "PNG"))
    body = server.post("/v1/embeddings", {"input": uri, "encoding_format": "float"}).json()
    expected = clip_vectors(server, texts=[uri])["textVectors"][0]
    np.testing.assert_array_equal(np.float32(body["data"][0]["embedding"]), np.float32(expected))


def test_dimensions_equal_is_accepted_smaller_is_refused(server, client):
    dim = server.get("/meta").json()["clip-vectorizer"]["model"]["dimension"]
    assert (
        len(client.embeddings.create(model="m", input="a", dimensions=dim, encoding_format="float").data[0].embedding)
        == dim
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="m", input="a", dimensions=dim // 2)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "dimensions" and "Matryoshka" in caught.value.body["message"]


@pytest.mark.parametrize(
    "payload,status,param",
    [
        ({"input": []}, 400, "input"),
        ({"input": [1, 2]}, 400, "input"),
        ({}, 400, "input"),
        ({"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"input": "a", "modality": "audio"}, 400, "modality"),
        ({"input": "not a data uri", "modality": "image"}, 400, "input"),
        ({"input": "data:image/png;base64,!!!", "modality": "image"}, 400, "input"),
        ({"input": "a", "dimensions": "16"}, 400, "dimensions"),
        (b"{not json", 400, None),
        ({"input": ["a"] * 300}, 413, "input"),
    ],
)
def test_errors_have_the_openai_shape(server, payload, status, param):
    response = server.post("/v1/embeddings", payload)
    assert response.status_code == status, response.text
    error = strict_json(response.text)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param and isinstance(error["code"], str)


def test_unknown_v1_route_is_openai_shaped_and_other_routes_keep_theirs(server):
    response = server.get("/v1/models-that-do-not-exist")
    assert response.status_code == 404
    assert isinstance(response.json()["error"], dict)
    legacy = server.post("/vectorize", b"{not json")
    assert legacy.status_code == 400 and isinstance(legacy.json()["error"], str)


# -- /vectors: text2vec-transformers and img2vec-neural ---------------------------------------------


@pytest.mark.parametrize("path", ["/vectors", "/vectors/"])
def test_text2vec_transformers_single_text(server, path):
    body = {"text": "a photo of a cat", "config": {"pooling_strategy": "masked_mean", "task_type": "query"}}
    response = server.post(path, json.dumps(body))  # Weaviate sends no Content-Type here
    assert response.status_code == 200, response.text
    answer = strict_json(response.text)
    expected = clip_vectors(server, ["a photo of a cat"])["textVectors"][0]
    assert answer["text"] == "a photo of a cat"
    assert answer["dim"] == answer["dims"] == len(expected) == len(answer["vector"])
    np.testing.assert_array_equal(np.float32(answer["vector"]), np.float32(expected))


def test_text2vec_transformers_batch(server):
    texts = ["one", "two", "three"]
    answer = server.post("/vectors", {"texts": texts, "config": {"task_type": "passage"}}).json()
    expected = clip_vectors(server, texts)["textVectors"]
    assert answer["dims"] == len(expected[0])
    np.testing.assert_array_equal(np.float32(answer["vectors"]), np.float32(expected))


def test_img2vec_neural_image(server):
    image = media.b64(media.encode(media.photo(seed=7), "JPEG"))
    answer = server.post("/vectors/", {"id": "obj-1", "image": image}).json()
    expected = clip_vectors(server, images=[image])["imageVectors"][0]
    assert answer["id"] == "obj-1" and answer["dim"] == len(expected)
    np.testing.assert_array_equal(np.float32(answer["vector"]), np.float32(expected))


@pytest.mark.parametrize(
    "payload,status,words",
    [
        ({"id": "x", "image": "not base64 ☃"}, 400, "base64"),
        ({"id": "x", "image": media.b64(b"not an image")}, 400, "image"),
        ({"text": "a", "image": media.b64(b"x")}, 400, "both"),
        ({"text": 5}, 400, "string"),
        ({"texts": "a"}, 400, "array"),
        ({"text": "a", "config": {"dimensions": 3}}, 400, "dimensions"),
        ({"id": "only an id"}, 400, "'text'"),
        (b"[1]", 400, "object"),
        ({"texts": ["a"] * 300}, 413, "VECTORIZER_MAX_TEXTS"),
    ],
)
def test_vectors_errors_are_plain_json(server, payload, status, words):
    response = server.post("/vectors", payload)
    assert response.status_code == status, response.text
    error = strict_json(response.text)["error"]
    assert isinstance(error, str) and words in error


@pytest.mark.parametrize(
    "path,body,label",
    [
        ("/vectorize", b'{"texts": ["ok", "\\ud800"]}', "texts[1]"),
        ("/v1/embeddings", b'{"input": ["ok", "\\ud800"]}', "input[1]"),
        ("/v1/embeddings", b'{"input": "\\ud800"}', "input"),
        ("/vectors", b'{"texts": ["ok", "\\udfff"]}', "'texts[1]'"),
        ("/vectors", b'{"text": "a \\ud800 b"}', "'text'"),
    ],
)
def test_every_wire_format_refuses_an_unpaired_surrogate_in_the_same_words(server, path, body, label):
    response = server.post(path, body)
    assert response.status_code == 400, response.text
    error = strict_json(response.text)["error"]
    message = error["message"] if isinstance(error, dict) else error
    assert message == f"{label} is not valid Unicode: it contains an unpaired surrogate escape such as \\ud800"
