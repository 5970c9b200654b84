"""Weaviate's multi2vec-clip contract, over real HTTP against the server started as a subprocess."""

from __future__ import annotations

import base64
import socket

import numpy as np
import pytest
import requests

from tests import media
from tests.reference import ReferenceClip, assert_parity, strict_json, unit


@pytest.fixture(scope="module")
def reference(tiny_model):
    return ReferenceClip(tiny_model)


def vectorize(server, body, **kwargs) -> dict:
    response = server.post("/vectorize", body, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return strict_json(response.text)


def error_of(response: requests.Response) -> str:
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    body = strict_json(response.text)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    return body["error"]


# -- health and meta -------------------------------------------------------------------------------


def test_live_and_ready_answer_204_with_empty_body(server):
    for path in ("/.well-known/live", "/.well-known/ready"):
        response = server.get(path)
        assert response.status_code == 204
        assert response.content == b""


def test_meta_describes_the_model_as_a_json_object(server, tiny_model):
    first, second = server.get("/meta"), server.get("/meta")
    assert first.status_code == 200
    meta = strict_json(first.text)
    assert first.content == second.content  # computed once
    assert meta["clip-vectorizer"]["model"]["dimension"] == 16
    assert meta["clip-vectorizer"]["model"]["path"] == str(tiny_model.resolve())
    assert meta["clip-vectorizer"]["model"]["normalized"] == {"text": True, "image": True}
    assert meta["clip-vectorizer"]["device"] == "cpu" and meta["clip-vectorizer"]["dtype"] == "float32"
    assert {"torch", "transformers", "clip-vectorizer"} <= set(meta["clip-vectorizer"]["versions"])


# -- vectorize: shape of the answer ----------------------------------------------------------------


def test_texts_and_images_come_back_in_order_and_match_transformers(server, reference):
    texts = ["a photo of a cat", "a red circle", "", "ünïcödé ✓ 日本語"]
    images = [media.photo(seed=s) for s in (1, 2, 3)]
    body = vectorize(server, {"texts": texts, "images": [media.b64(media.encode(i, "PNG")) for i in images]})
    assert set(body) == {"textVectors", "imageVectors"}
    assert_parity(body["textVectors"], unit(reference.texts(texts)), max_abs=1e-6)
    assert_parity(body["imageVectors"], unit(reference.images(images)), max_abs=1e-6)


@pytest.mark.parametrize(
    "payload,texts,images",
    [
        ({"texts": ["a", "b"]}, 2, 0),
        ({"images": [media.b64(media.encode(media.photo(), "PNG"))]}, 0, 1),
        ({}, 0, 0),
        ({"texts": None, "images": None}, 0, 0),
        ({"texts": [], "images": [], "audio": ["ignored"], "model": "ignored"}, 0, 0),
    ],
)
def test_both_keys_are_always_present(server, payload, texts, images):
    body = vectorize(server, payload)
    assert len(body["textVectors"]) == texts and len(body["imageVectors"]) == images


def test_vectors_are_unit_length_float32(server):
    body = vectorize(
        server, {"texts": ["x", "a longer sentence"], "images": [media.b64(media.encode(media.photo(), "JPEG"))]}
    )
    for vector in body["textVectors"] + body["imageVectors"]:
        array = np.asarray(vector, dtype=np.float64)
        assert len(vector) == 16
        assert np.all(array == array.astype(np.float32))  # exactly representable as float32
        assert abs(np.linalg.norm(array) - 1.0) < 1e-5


def test_doubled_slash_and_missing_content_type_work(server):
    plain = vectorize(server, {"texts": ["a cat"]})
    response = requests.post(
        server.url + "//vectorize", data=b'{"texts": ["a cat"]}', timeout=30, headers={"Content-Type": ""}
    )
    assert response.status_code == 200
    assert strict_json(response.text) == plain
    assert requests.get(server.url + "//meta", timeout=30).status_code == 200
    assert requests.get(server.url + "//.well-known/ready", timeout=30).status_code == 204


def test_image_encodings_give_the_same_vector(server):
    data = media.encode(media.photo(seed=7), "PNG")
    standard = base64.b64encode(data).decode()
    variants = [
        standard,
        "data:image/png;base64," + standard,
        base64.urlsafe_b64encode(data).decode().rstrip("="),
        base64.encodebytes(data).decode(),  # wrapped at 76 characters
    ]
    body = vectorize(server, {"images": variants})
    assert all(v == body["imageVectors"][0] for v in body["imageVectors"])


# -- determinism ------------------------------------------------------------------------------------


def test_identical_inputs_are_bit_identical_within_a_request(server):
    image = media.b64(media.encode(media.photo(seed=11), "JPEG"))
    body = vectorize(server, {"texts": ["same", "other", "same"], "images": [image, image]})
    assert body["textVectors"][0] == body["textVectors"][2] != body["textVectors"][1]
    assert body["imageVectors"][0] == body["imageVectors"][1]


def test_identical_inputs_are_bit_identical_across_requests_of_any_composition(server):
    image = media.b64(media.encode(media.photo(seed=12), "JPEG"))
    others = [media.b64(media.encode(media.photo(seed=s), "JPEG")) for s in (13, 14, 15)]
    alone = vectorize(server, {"texts": ["a lone query"], "images": [image]})
    crowded = vectorize(server, {"texts": ["x", "a lone query", "y z"], "images": others[:2] + [image] + others[2:]})
    again = vectorize(server, {"images": [image]})
    assert crowded["textVectors"][1] == alone["textVectors"][0]
    assert crowded["imageVectors"][2] == alone["imageVectors"][0] == again["imageVectors"][0]


# -- texts ------------------------------------------------------------------------------------------


def test_long_texts_are_truncated_not_refused(server):
    words = [f"word{i % 37}" for i in range(500)]
    first = " ".join(words)
    same_start = " ".join(words[:100] + ["completely", "different", "ending"] * 50)
    other_start = " ".join(["another", "beginning"] + words)
    body = vectorize(server, {"texts": [first, same_start, other_start]})
    a, b, c = body["textVectors"]
    assert a == b  # only the first 77 tokens count
    assert a != c


def test_texts_that_look_like_addresses_are_embedded_as_text(server, reference, tmp_path):
    image_file = tmp_path / "cat.jpg"
    image_file.write_bytes(media.encode(media.photo(seed=3), "JPEG"))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        texts = [
            f"http://127.0.0.1:{port}/cat.jpg",
            f"file://{image_file}",
            str(image_file),
            "data:image/jpeg;base64," + media.b64(image_file.read_bytes()),
        ]
        body = vectorize(server, {"texts": texts})
        with pytest.raises(socket.timeout):
            listener.accept()  # nobody tried to fetch the URL
    assert_parity(body["textVectors"], unit(reference.texts(texts)), max_abs=1e-6)
    image_vector = vectorize(server, {"images": [media.b64(image_file.read_bytes())]})["imageVectors"][0]
    assert body["textVectors"][2] != image_vector


# -- images -----------------------------------------------------------------------------------------


def test_every_supported_image_format_is_embedded(server):
    formats = media.all_formats()
    body = vectorize(server, {"images": [media.b64(data) for data in formats.values()]})
    assert len(body["imageVectors"]) == len(formats)
    assert len({tuple(v) for v in body["imageVectors"]}) > 1


def test_transparent_png_embeds_like_the_same_picture_on_white(server):
    picture = media.photo(seed=21)
    rgba = picture.convert("RGBA")
    alpha = np.full((picture.height, picture.width), 255, dtype=np.uint8)
    alpha[:, : picture.width // 2] = 0
    rgba.putalpha(media.Image.fromarray(alpha))
    on_white = np.asarray(picture).copy()
    on_white[:, : picture.width // 2] = 255
    body = vectorize(
        server,
        {
            "images": [
                media.b64(media.encode(rgba, "PNG")),
                media.b64(media.encode(media.Image.fromarray(on_white), "PNG")),
            ]
        },
    )
    assert body["imageVectors"][0] == body["imageVectors"][1]


# -- client mistakes: 4xx with a JSON error that says what to fix ------------------------------------

PNG = media.b64(media.encode(media.photo(), "PNG"))


@pytest.mark.parametrize(
    "body,status,says",
    [
        (b"", 400, "request body is empty"),
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe\x00garbage", 400, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
        (b'["texts"]', 400, "must be a JSON object, got an array"),
        (b'{"texts": "a cat"}', 400, "'texts' must be an array of strings, got a string"),
        (b'{"texts": ["ok", 3]}', 400, "texts[1] must be a string, got a number"),
        (b'{"texts": [null]}', 400, "texts[0] must be a string, got null"),
        (b'{"texts": ["ok", "\\ud800"]}', 400, "texts[1] is not valid Unicode"),
        (b'{"images": {"a": 1}}', 400, "'images' must be an array of strings, got an object"),
        (b'{"images": ["' + PNG.encode() + b'", "%%%"]}', 400, "images[1] is not valid base64"),
        (b'{"images": ["' + PNG[: len(PNG) // 8 * 4].encode() + b'"]}', 400, "images[0] could not be decoded as PNG"),
        (b'{"images": ["aGVsbG8gd29ybGQ="]}', 400, "images[0] is not an image in a supported format"),
        (b'{"images": [""]}', 400, "images[0] is empty"),
        (b'{"images": ["data:image/png,abc"]}', 400, "images[0] is a data URI without ';base64,'"),
        (
            ('{"images": ["' + media.b64(media.encode(media.photo(), "PPM")) + '"]}').encode(),
            400,
            "not an image in a supported format",
        ),
        (
            ('{"images": ["' + media.b64(media.png_header_only(30_000, 30_000)) + '"]}').encode(),
            413,
            "VECTORIZER_MAX_IMAGE_PIXELS",
        ),
    ],
)
def test_bad_input_gets_a_4xx_json_error_naming_the_problem(server, body, status, says):
    response = server.post("/vectorize", body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert says in error_of(response)
    assert server.get("/.well-known/ready").status_code == 204  # and the service is unharmed


def test_unknown_routes_and_methods_answer_json(server):
    missing = server.get("/nope")
    assert missing.status_code == 404 and error_of(missing)
    wrong = server.get("/vectorize")
    assert wrong.status_code == 405 and error_of(wrong)
    assert "POST" in wrong.headers["Allow"]
