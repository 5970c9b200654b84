"""The importer's retries, stop and grouped report, on a scripted Weaviate (no server needed), and the
readiness probe against a small HTTP server that answers as Weaviate and our service do."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import plugin_api.importer as importer
from plugin_api.images import ImageItem
from plugin_api.importer import NOT_IMPORTED, ImportReport, ObjectOutcome, failure_cause, import_images
from plugin_api.readiness import ModuleMissing, Readiness, ServiceDown, is_transient

# Messages as Weaviate v1.39.0 and our service give them (seen in tests/e2e)
REFUSED = (
    'send POST request: Post "http://127.0.0.1:4321/vectorize": dial tcp 127.0.0.1:4321: connect: connection refused'
)
LOADING = "fail with status 503: the model is still loading; retry when /.well-known/ready answers 204"
QUEUE_FULL = "fail with status 503: the queue is full; see VECTORIZER_MAX_QUEUE"
NOT_IMAGE = (
    "fail with status 400: images[0] is not an image in a supported format (PNG, JPEG); its first bytes are b'abc'"
)
DAMAGED = "fail with status 400: images[0] could not be decoded as PNG (64x64): OSError: image file is truncated"
TOO_BIG = (
    "fail with status 413: images[0] is 9000x9000 = 81000000 pixels, above the limit of 1000000; "
    "raise VECTORIZER_MAX_IMAGE_PIXELS to accept it"
)


@pytest.mark.parametrize(
    "message", [REFUSED, LOADING, QUEUE_FULL, "Deadline Exceeded", 'Post "http://x/vectorize": EOF']
)
def test_transient_messages(message):
    assert is_transient(message)


@pytest.mark.parametrize("message", [NOT_IMAGE, DAMAGED, TOO_BIG, "cannot read: [Errno 13] Permission denied"])
def test_permanent_messages(message):
    assert not is_transient(message)


def test_report_groups_failures_by_cause_naming_the_files():
    outcomes = [ObjectOutcome(f"ok{i}.png", "stored", "u") for i in range(4)]
    outcomes += [ObjectOutcome(f"bad{i}.jpg", "failed", None, NOT_IMAGE.replace("[0]", f"[{i}]")) for i in range(7)]
    outcomes += [ObjectOutcome("half.png", "failed", None, DAMAGED), ObjectOutcome("huge.png", "failed", None, TOO_BIG)]
    outcomes += [ObjectOutcome("odd.png", "failed", None, "something nobody expected")]
    lines = ImportReport(outcomes).details().splitlines()
    assert lines[0] == "4 stored, 0 skipped (already there), 10 failed (of 14)"
    assert lines[1] == "  7 files: not an image (bad0.jpg, bad1.jpg, bad2.jpg, bad3.jpg, bad4.jpg, … and 2 more)"
    assert lines[2].startswith("      e.g. fail with status 400: images[0] is not an image")
    assert "  1 file: damaged image (half.png)" in lines
    assert "  1 file: over the service's limit VECTORIZER_MAX_IMAGE_PIXELS (huge.png)" in lines
    assert "  1 file: something nobody expected (odd.png)" in lines  # an unknown message is its own group
    assert len(lines) == 1 + 2 * 3 + 1


class FakeClock:
    """Stands in for the importer's ``time``: sleeping moves the clock, nothing really waits."""

    def __init__(self) -> None:
        self.now, self.sleeps = 1000.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedWeaviate:
    """``_existing_uuids`` and ``_insert`` of the importer, answered from a dict; ``down`` says, per
    insert call, which error every object gets (None: stored)."""

    def __init__(self, down) -> None:
        self.stored: dict[str, dict] = {}
        self.down, self.inserts = down, 0

    def existing(self, collection, uuids):
        return {u for u in uuids if u in self.stored}

    def insert(self, collection, objects):
        if not objects:
            return {}
        self.inserts += 1
        error = self.down(self.inserts, objects)
        if error is None:
            self.stored.update({p.uuid: p.properties for p in objects})
        return {i: error for i in range(len(objects))}


@pytest.fixture
def scripted(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(importer, "time", clock)
    monkeypatch.setattr(importer, "weighted_fields", lambda collection: set())

    def install(down) -> ScriptedWeaviate:
        weaviate = ScriptedWeaviate(down)
        monkeypatch.setattr(importer, "_existing_uuids", weaviate.existing)
        monkeypatch.setattr(importer, "_insert", weaviate.insert)
        weaviate.clock = clock
        return weaviate

    return install


class Collection:
    name = "Fake"


def _items(count: int) -> list[ImageItem]:
    return [ImageItem.from_bytes(bytes([i, 1, 2]), f"img{i:02}.png") for i in range(count)]


def test_a_service_that_comes_back_is_waited_for_and_the_import_completes(scripted):
    # batch 1 stored; then the service is down for three tries (refused, refused, loading); then back
    answers = {2: REFUSED, 3: REFUSED, 4: LOADING}
    weaviate = scripted(lambda call, objects: answers.get(call))
    told: list[str] = []
    report = import_images(Collection(), _items(12), batch_size=4, progress=False, max_wait=60, on_wait=told.append)
    assert (report.stored, report.skipped, report.failed, report.stopped) == (12, 0, 0, None), report.details()
    assert len(weaviate.stored) == 12 and weaviate.inserts == 6  # each batch once, plus three retries
    assert weaviate.clock.sleeps == [0.5, 1.0, 2.0]  # growing pauses, not a tight loop
    assert len(told) == 2 and told[0].startswith("retrying for up to 60 s: send POST request")
    assert told[1] == "the service answers again; import resumed"


def test_a_service_that_stays_down_stops_the_import_once_with_the_rest_not_imported(scripted):
    weaviate = scripted(lambda call, objects: None if call == 1 else REFUSED)
    told: list[str] = []
    report = import_images(Collection(), _items(40), batch_size=4, progress=False, max_wait=30, on_wait=told.append)
    assert report.stopped == f"{REFUSED} (nothing stored for 30 s)"
    assert report.stored == 4 and report.failed == 36
    assert {o.cause for o in report.failures} == {"not imported, the import stopped"}
    assert all(o.error.startswith(NOT_IMPORTED) for o in report.failures)
    assert len(told) == 1  # one line when the wait starts; nothing per object
    assert 29 <= sum(weaviate.clock.sleeps) <= 30  # bounded by max_wait
    # one try per pause (0.5, 1, 2, 4, 8, 8, ... s), not one per object or a tight loop
    assert len(weaviate.clock.sleeps) <= 8 and weaviate.inserts == 2 + len(weaviate.clock.sleeps)
    details = report.details().splitlines()
    assert len(details) == 2 and details[1].startswith("  36 files: not imported, the import stopped (img04.png")


def test_no_wait_at_all_with_max_wait_0(scripted):
    weaviate = scripted(lambda call, objects: REFUSED)
    told: list[str] = []
    report = import_images(Collection(), _items(8), batch_size=4, progress=False, max_wait=0, on_wait=told.append)
    assert report.stopped == REFUSED and report.failed == 8
    assert weaviate.inserts == 1 and weaviate.clock.sleeps == [] and told == []


def test_objects_that_keep_failing_while_the_service_is_ready_fail_alone(scripted):
    class Ready:
        def problem(self):
            return None

        def wait(self, timeout, **kwargs):
            return None

    # img01 always gets a 503 (e.g. a deadline it can never meet); the others are stored
    def down(call, objects):
        return QUEUE_FULL if any(p.item.source == "img01.png" for p in objects) and len(objects) == 1 else None

    weaviate = scripted(down)
    original_insert = weaviate.insert

    def insert(collection, objects):  # per object, so that img01 fails alone
        out = {}
        for i, p in enumerate(objects):
            out[i] = original_insert(collection, [p])[0]
        return out

    importer._insert = insert  # restored by monkeypatch with the rest
    report = import_images(Collection(), _items(8), batch_size=4, progress=False, max_wait=20, readiness=Ready())
    assert report.stopped is None
    assert [o.status for o in report.outcomes] == ["stored", "failed"] + ["stored"] * 6
    assert report.failures[0].error == QUEUE_FULL


def test_a_probe_that_says_ready_while_nothing_can_be_stored_still_stops_the_import(scripted):
    class Ready:  # e.g. it asks the global service; the collection has an inferenceUrl of its own
        def problem(self):
            return None

        def wait(self, timeout, **kwargs):
            return None

    weaviate = scripted(lambda call, objects: REFUSED)
    report = import_images(
        Collection(), _items(12), batch_size=4, progress=False, max_wait=20, readiness=Ready(), on_wait=lambda _: None
    )
    assert report.stopped == f"{REFUSED} (nothing stored for 20 s)"
    assert {o.cause for o in report.failures} == {"not imported, the import stopped"} and report.failed == 12
    assert 19 <= sum(weaviate.clock.sleeps) <= 20  # one wait for the whole import, not one per batch


def test_an_object_stored_by_a_try_that_timed_out_counts_as_stored(scripted):
    def down(call, objects):
        return None

    weaviate = scripted(down)
    original_insert = weaviate.insert

    def insert(collection, objects):
        result = original_insert(collection, objects)
        if weaviate.inserts == 1:  # stored, but the answer never came back
            return dict.fromkeys(result, "Deadline Exceeded")
        return result

    importer._insert = insert
    report = import_images(Collection(), _items(3), batch_size=3, progress=False, max_wait=10, on_wait=lambda _: None)
    assert [o.status for o in report.outcomes] == ["stored"] * 3
    assert weaviate.inserts == 1  # found stored on the retry's existence check, not sent again


class _Endpoints(BaseHTTPRequestHandler):
    routes: dict  # path -> list of (status, body), the last one repeated

    def do_GET(self):
        answers = self.routes.get(self.path, [(404, {})])
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    servers = []

    def serve(routes: dict) -> str:
        handler = type("Handler", (_Endpoints,), {"routes": routes})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_readiness_waits_for_the_module_as_weaviates_meta_reports_it(fake_server):
    loading = {"modules": {"multi2vec-clip": {"error": "the model is still loading; retry when ready"}}}
    url = fake_server(
        {
            "/v1/.well-known/ready": [(503, None), (200, None)],
            "/v1/meta": [(200, loading)] * 3 + [(200, {"modules": {"multi2vec-clip": {"model": {}}}})],
        }
    )
    told: list[str] = []
    Readiness(url).wait(10, on_wait=told.append, poll=0.01)
    assert told == [f"waiting up to 10 s: Weaviate at {url} is not ready (status 503)"]  # said once

    still = fake_server({"/v1/.well-known/ready": [(200, None)], "/v1/meta": [(200, loading)]})
    with pytest.raises(ServiceDown, match="multi2vec-clip service is not ready: the model is still loading"):
        Readiness(still).wait(0.2, poll=0.01)

    without = fake_server({"/v1/.well-known/ready": [(200, None)], "/v1/meta": [(200, {"modules": {}})]})
    with pytest.raises(ModuleMissing, match="ENABLE_MODULES=multi2vec-clip"):
        Readiness(without).wait(10, poll=0.01)  # at once: waiting would not help


def test_readiness_asks_the_service_itself_when_its_url_is_known(fake_server):
    weaviate = fake_server({"/v1/.well-known/ready": [(200, None)]})  # no /v1/meta needed
    service = fake_server({"/.well-known/ready": [(503, {"error": "the model is still loading"}), (204, None)]})
    readiness = Readiness(weaviate, vectorizer_url=service)
    assert readiness.problem() == f"the inference service at {service} is not ready: the model is still loading"
    assert readiness.problem() is None


def test_failure_cause_names():
    assert failure_cause(REFUSED) == failure_cause(LOADING) == "the inference service was unreachable or busy"
    assert failure_cause(f"{NOT_IMPORTED} (x)") == "not imported, the import stopped"
