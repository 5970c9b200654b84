"""Thousands of malformed /vectorize bodies: every answer is a JSON 4xx (or a correct 200), never a
5xx, a hang or a crash; the service stays ready and its memory stays level. Seeded and bounded."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests import media
from tests.reference import strict_json
from tests.server_process import ServerProcess

EXAMPLES = 2000


def corpus() -> list[bytes]:
    images = list(media.all_formats().values())
    images.append(media.encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"))
    images.append(media.encode(Image.new("L", (20000, 1), 128), "PNG"))
    images.append(media.encode(Image.new("RGB", (1, 20000), (1, 2, 3)), "JPEG"))
    frames = io.BytesIO()
    Image.new("RGB", (16, 16), (255, 0, 0)).save(
        frames, "WEBP", save_all=True, append_images=[Image.new("RGB", (16, 16), (0, 0, 255))]
    )
    images.append(frames.getvalue())
    images.append(media.png_header_only(60_000, 60_000))
    return images


CORPUS = corpus()


@st.composite
def damaged_image(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    action = draw(st.sampled_from(["intact", "truncate", "flip", "splice", "prefix"]))
    if action == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif action == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif action == "splice":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    elif action == "prefix":
        data[:0] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def image_string():
    return st.one_of(
        damaged_image().map(media.b64),
        damaged_image().map(lambda b: "data:image/png;base64," + media.b64(b)),
        damaged_image().map(lambda b: media.b64(b)[: max(1, len(media.b64(b)) // 2)]),
        st.text(max_size=40),
        st.binary(max_size=64).map(media.b64),
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)

SPECIAL = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b'{"texts": [""]}',
    b'{"texts": ["", "", ""]}',
    b'{"images": [""]}',
    b'{"texts": NaN}',
    b'{"texts": [Infinity]}',
    b"[" * 50_000,
    b'{"texts": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    json.dumps({"texts": ["a"] * 100_000}).encode(),
    json.dumps({"images": ["AAAA"] * 100_000}).encode(),
    json.dumps({"texts": ["word " * 50_000]}).encode(),
    b'{"texts": ["\\u0000\\ud83d"]}',
]

BODIES = st.one_of(
    st.sampled_from(SPECIAL),
    st.binary(max_size=512),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "texts": st.one_of(JSON, st.lists(st.one_of(st.text(max_size=60), JSON), max_size=4)),
            "images": st.one_of(JSON, st.lists(st.one_of(image_string(), JSON), max_size=3)),
        },
    ).map(lambda d: json.dumps(d).encode()),
)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def fuzz_server(tiny_model):
    server = ServerProcess(tiny_model, "--max-texts", "512", "--max-images", "64")
    server.start()
    server.wait_ready()
    yield server
    server.stop()


def test_malformed_bodies_get_json_4xx_and_never_hurt_the_service(fuzz_server):
    session = requests.Session()
    url = fuzz_server.url + "/vectorize"
    valid = {"texts": ["warm"], "images": [media.b64(data) for data in CORPUS[:6]]}
    for _ in range(3):
        assert session.post(url, json=valid, timeout=30).status_code == 200
    baseline = rss_kb(fuzz_server.process.pid)
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(BODIES)
    def check(body: bytes) -> None:
        response = session.post(url, data=body, timeout=30, headers={"Content-Type": "application/json"})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (200, 400, 413), (response.status_code, response.text[:300], body[:200])
        payload = strict_json(response.text)
        assert isinstance(payload, dict)
        if response.status_code == 200:
            request = json.loads(body)
            assert len(payload["textVectors"]) == len(request.get("texts") or [])
            assert len(payload["imageVectors"]) == len(request.get("images") or [])
        else:
            assert isinstance(payload["error"], str) and payload["error"]

    check()
    assert fuzz_server.process.poll() is None, fuzz_server.log
    assert fuzz_server.get("/.well-known/ready").status_code == 204
    assert statuses.get(400, 0) > EXAMPLES // 4 and statuses.get(200, 0) > 0, statuses
    grown_mb = (rss_kb(fuzz_server.process.pid) - baseline) / 1024
    print(f"statuses {statuses}, RSS {baseline / 1024:.0f} MB -> grew {grown_mb:.1f} MB")
    assert grown_mb < 80, f"RSS grew by {grown_mb:.0f} MB over {EXAMPLES} malformed requests"
