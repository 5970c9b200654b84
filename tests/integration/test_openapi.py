"""docs/openapi.json is the served description, and every documented route answers as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import media

jsonschema = pytest.importorskip("jsonschema")

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

# One valid request per documented operation, and one that must fail (None: no failing body exists).
CALLS = {
    ("/vectorize", "post"): (
        {"texts": ["a"], "images": [media.b64(media.encode(media.photo(), "PNG"))]},
        (b"[1]", "400"),
    ),
    ("/vectors", "post"): ({"text": "a"}, ({"image": "%%%"}, "400")),
    ("/v1/embeddings", "post"): ({"input": ["a", "b"], "encoding_format": "base64"}, ({"input": 3}, "400")),
    ("/meta", "get"): (None, None),
    ("/.well-known/live", "get"): (None, None),
    ("/.well-known/ready", "get"): (None, None),
    ("/metrics", "get"): (None, None),
    ("/openapi.json", "get"): (None, None),
}


@pytest.fixture(scope="module")
def spec(server):
    served = server.get("/openapi.json")
    assert served.status_code == 200
    document = served.json()
    assert document == json.loads(DOC.read_text()), (
        "docs/openapi.json is stale: python -m vectorizer_module.server.openapi > docs/openapi.json"
    )
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    return document


def check(spec: dict, path: str, method: str, response) -> None:
    documented = spec["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {path} answered {status}, documents {sorted(documented)}"
    content = documented[status].get("content")
    if content is None:
        assert response.content == b""
        return
    media_type = response.headers["Content-Type"].split(";")[0]
    assert media_type in content, f"{path} answered {media_type}, documents {list(content)}"
    if media_type == "application/json":
        schema = {**content[media_type]["schema"], "components": spec["components"]}
        jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)


def test_every_route_is_documented_and_every_documented_route_is_called(spec):
    assert {(p, m) for p, ops in spec["paths"].items() for m in ops} == set(CALLS)
    assert spec["openapi"].startswith("3.1")


@pytest.mark.parametrize("path,method", sorted(CALLS))
def test_route_answers_as_documented(server, spec, path, method):
    good, bad = CALLS[(path, method)]
    response = server.post(path, good) if method == "post" else server.get(path)
    assert response.status_code < 300
    check(spec, path, method, response)
    if bad is not None:
        body, status = bad
        failed = server.post(path, body)
        assert str(failed.status_code) == status
        check(spec, path, method, failed)


def test_every_vectors_variant_validates(server, spec):
    for body in ({"texts": ["a", "b"]}, {"id": "i", "image": media.b64(media.encode(media.photo(), "PNG"))}):
        check(spec, "/vectors", "post", server.post("/vectors", body))


def test_the_schema_check_can_fail(spec):
    schema = {
        **spec["paths"]["/vectorize"]["post"]["responses"]["200"]["content"]["application/json"]["schema"],
        "components": spec["components"],
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"textVectors": []}, schema, cls=jsonschema.Draft202012Validator)
