"""Limits, API key, metrics, logs, and the proof that input never causes I/O."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from tests import media
from tests.reference import strict_json
from tests.server_process import ServerProcess, metric_value, peak_rss_mb

AUDIT_SITE = Path(__file__).parent / "audit_site"


@pytest.fixture(scope="module")
def strict(tiny_model, tmp_path_factory):
    """A server with small limits and an API key, whose file opens and connections are recorded."""
    audit = tmp_path_factory.mktemp("audit") / "audit.log"
    server = ServerProcess(
        tiny_model,
        "--max-texts",
        "3",
        "--max-images",
        "2",
        "--max-text-chars",
        "1000",
        "--max-image-bytes",
        "50000",
        "--max-body-bytes",
        "300000",
        "--api-key",
        "s3cret",
        env={
            "PYTHONPATH": os.pathsep.join([str(AUDIT_SITE), os.environ.get("PYTHONPATH", "")]),
            "CLIP_AUDIT_LOG": str(audit),
        },
    )
    server.start()
    server.wait_ready()
    server.audit = audit
    yield server
    server.stop()


AUTH = {"Authorization": "Bearer s3cret"}


def test_api_key_guards_work_routes_but_not_probes(strict):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "nope"}):
        response = strict.post("/vectorize", {"texts": ["a"]}, headers=headers)
        assert response.status_code == 401 and "API key" in strict_json(response.text)["error"]
    assert strict.get("/meta").status_code == 401 and strict.get("/metrics").status_code == 401
    assert strict.post("/vectorize", {"texts": ["a"]}, headers=AUTH).status_code == 200
    assert strict.post("/vectorize", {"texts": ["a"]}, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert strict.get("/.well-known/ready").status_code == 204
    assert strict.get("/.well-known/live").status_code == 204


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/embeddings", {"input": "a"}),
        ("/vectors", {"text": "a"}),
        ("/vectors/", {"text": "a"}),
    ],
)
def test_api_key_guards_the_other_protocols_too(strict, path, body):
    refused = strict.post(path, body)
    error = strict_json(refused.text)["error"]  # OpenAI's routes nest it: {"error": {"message": ...}}
    assert refused.status_code == 401 and "API key" in (error["message"] if isinstance(error, dict) else error)
    assert strict.post(path, body, headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    "body,setting",
    [
        ({"texts": ["a", "b", "c", "d"]}, "VECTORIZER_MAX_TEXTS"),
        ({"images": [media.b64(media.encode(media.photo(8, 8), "PNG"))] * 3}, "VECTORIZER_MAX_IMAGES"),
        ({"texts": ["x" * 1001]}, "VECTORIZER_MAX_TEXT_CHARS"),
        ({"images": [media.b64(os.urandom(60_000))]}, "VECTORIZER_MAX_IMAGE_BYTES"),
        ({"texts": ["y" * 900] * 3, "images": ["A" * 299_000]}, "VECTORIZER_MAX_BODY_BYTES"),
    ],
)
def test_each_limit_answers_413_naming_its_setting(strict, body, setting):
    response = strict.post("/vectorize", body, headers=AUTH)
    assert response.status_code == 413, response.text
    assert setting in strict_json(response.text)["error"]
    assert strict.post("/vectorize", {"texts": ["fine"]}, headers=AUTH).status_code == 200


def test_metrics_count_requests_rejections_and_items(strict):
    def scrape() -> str:
        response = strict.get("/metrics", headers=AUTH)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
        return response.text

    before = scrape()
    strict.post(
        "/vectorize",
        {"texts": ["metric one", "metric two"], "images": [media.b64(media.encode(media.photo(seed=40), "PNG"))]},
        headers=AUTH,
    )
    strict.post("/vectorize", b"{broken", headers=AUTH)
    after = scrape()
    assert (
        metric_value(after, "clip_requests_total", endpoint="/vectorize", status="200")
        == metric_value(before, "clip_requests_total", endpoint="/vectorize", status="200") + 1
    )
    assert (
        metric_value(after, "clip_rejected_total", reason="invalid_json")
        == metric_value(before, "clip_rejected_total", reason="invalid_json") + 1
    )
    assert (
        metric_value(after, "clip_items_embedded_total", modality="text")
        >= metric_value(before, "clip_items_embedded_total", modality="text") + 2
    )
    assert (
        metric_value(after, "clip_items_embedded_total", modality="image")
        >= metric_value(before, "clip_items_embedded_total", modality="image") + 1
    )
    assert "clip_request_seconds_bucket" in after and "clip_queue_depth" in after
    assert metric_value(after, "clip_model_load_seconds") > 0
    assert 'device="cpu"' in after


def test_logs_are_json_lines_with_request_ids_and_no_contents(strict):
    secret = "confidential-caption-7f3a"
    response = strict.post("/vectorize", {"texts": [secret]}, headers={**AUTH, "X-Request-Id": "req-abc-123"})
    assert response.headers["X-Request-Id"] == "req-abc-123"
    lines = [json.loads(line) for line in strict.log.splitlines() if line.startswith("{")]
    entry = next(e for e in lines if e.get("request_id") == "req-abc-123")
    assert entry["status"] == 200 and entry["texts"] == 1 and entry["endpoint"] == "/vectorize"
    assert secret not in strict.log


def test_input_never_causes_io(strict, tmp_path, tiny_model):
    assert f"open {tiny_model.resolve()}" in strict.audit.read_text()  # the recorder works: it saw the model load
    image_file = tmp_path / "photo.jpg"
    image_file.write_bytes(media.encode(media.photo(seed=41), "JPEG"))
    texts = [str(image_file), f"file://{image_file}", "http://127.0.0.1:9/cat.png"]
    mark = strict.audit.stat().st_size
    response = strict.post("/vectorize", {"texts": texts}, headers=AUTH)
    assert response.status_code == 200
    second = strict.post(
        "/vectorize", {"texts": ["data:image/jpeg;base64," + media.b64(image_file.read_bytes())[:900]]}, headers=AUTH
    )
    assert second.status_code == 200
    events = strict.audit.read_text()[mark:]
    assert str(image_file) not in events
    assert "connect" not in events, events


def test_strip_images_cost_the_built_in_model_no_more_than_ordinary_ones():
    """A 1 x 100000 PNG is 472 bytes; resized whole for a 64-pixel tower it took 8 s and 4 GB."""
    strip = media.b64(media.encode(Image.new("RGB", (1, 100_000), (220, 20, 20)), "PNG"))
    wide = media.b64(media.encode(Image.new("RGB", (100_000, 1), (20, 20, 220)), "PNG"))
    server = ServerProcess(None).start()  # no --model: the built-in demo model
    try:
        server.wait_ready()
        (worker,) = server.worker_pids()
        before = peak_rss_mb(worker)
        started = time.monotonic()
        response = server.post("/vectorize", {"images": [strip, wide, strip, wide]})
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert len(response.json()["imageVectors"]) == 4
        assert elapsed < 5, f"four strips took {elapsed:.1f} s"
        assert peak_rss_mb(worker) - before < 200, "strips grew the worker's peak memory"
    finally:
        assert server.stop() == 0


def test_huge_images_are_decoded_one_at_a_time(tiny_model):
    """16 pictures of 7000 x 7000 in one request (2.6 MB of PNG, inside every default limit): each is
    decoded, made into the tower's 224-pixel input and dropped before the next, so the worker's peak
    grows by about one picture's decode, not sixteen (it grew by 3.2 GB)."""
    png = media.encode(Image.new("RGB", (7000, 7000), (200, 30, 30)), "PNG")
    images = [media.b64(media.png_with_text(png, f"copy {i}")) for i in range(16)]
    server = ServerProcess(tiny_model).start()
    try:
        server.wait_ready()
        (worker,) = server.worker_pids()
        before = peak_rss_mb(worker)
        response = server.post("/vectorize", {"images": images})
        assert response.status_code == 200, response.text
        assert len(response.json()["imageVectors"]) == 16
        assert peak_rss_mb(worker) - before < 1024
    finally:
        assert server.stop() == 0
