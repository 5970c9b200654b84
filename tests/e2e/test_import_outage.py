"""``clip-weaviate import`` against a real Weaviate whose inference service is killed, restarted or
still loading: it waits instead of failing every file, stops with one line and exit code 3 when the
service stays down, and a re-run stores exactly the valid files, once each, every one with a vector.

These tests kill the service of a stack of their own (``restartable_stack``)."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import pytest

import plugin_api.importer
from plugin_api.cli import EXIT_DOWN, EXIT_FAILED, EXIT_OK, main
from plugin_api.images import content_uuid
from tests.media import encode, photo

VALID, CORRUPT, BATCH = 16, 3, 4


def _images(folder: Path, corrupt: int = CORRUPT) -> list[bytes]:
    """VALID photos (img00.png ...) and ``corrupt`` files that are not images (sorted last)."""
    folder.mkdir()
    valid = [encode(photo(seed=700 + i), "PNG") for i in range(VALID)]
    for i, data in enumerate(valid):
        (folder / f"img{i:02}.png").write_bytes(data)
    for i in range(corrupt):
        (folder / f"zz-bad-{i}.jpg").write_bytes(b"not a picture, only text " + bytes([i]))
    return valid


def _kill(service) -> None:
    """SIGKILL the service's whole process group (the gunicorn arbiter and its workers), no drain."""
    os.killpg(service.process.pid, signal.SIGKILL)
    service.process.process.wait()


@pytest.fixture
def service_back(restartable_stack):
    """Whatever a test did to the service, it runs again (and is ready) afterwards."""
    yield restartable_stack.service
    if not restartable_stack.service.running:
        restartable_stack.service.start()
    restartable_stack.service.wait_ready()


@pytest.fixture
def collection(request, restartable_stack):
    name = "Outage_" + re.sub(r"[^A-Za-z0-9]", "_", request.node.name)[:50]
    with restartable_stack.connect() as client:
        if client.collections.exists(name):
            client.collections.delete(name)
        yield name
        if client.collections.exists(name):
            client.collections.delete(name)


@pytest.fixture
def after_first_batch(monkeypatch):
    """Run ``action`` once the CLI's next import has stored its first batch (a hook on import_images;
    later imports in the test run undisturbed)."""
    original = plugin_api.importer.import_images

    def install(action) -> None:
        pending = [action]

        def import_images(*args, **kwargs):
            def on_batch(outcomes):
                if pending:
                    pending.pop()()

            return original(*args, **kwargs, on_batch=on_batch)

        monkeypatch.setattr(plugin_api.importer, "import_images", import_images)

    return install


def _import(stack, folder: Path, name: str, *extra: str) -> int:
    return main(
        [
            "import",
            str(folder),
            "--url",
            stack.url,
            "--grpc-port",
            str(stack.grpc_port),
            "--collection",
            name,
            "--batch-size",
            str(BATCH),
            "--quiet",
            *extra,
        ]
    )


def _assert_exactly_stored(stack, name: str, valid: list[bytes]) -> None:
    """The collection holds the valid images, each once, each with a vector; nothing else."""
    with stack.connect() as client:
        objects = list(client.collections.get(name).iterator(include_vector=True))
    assert sorted(str(o.uuid) for o in objects) == sorted(content_uuid(d) for d in valid)
    assert all(len(o.vector["default"]) > 0 for o in objects)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_service_killed_mid_import_and_restarted_is_waited_for(
    restartable_stack, service_back, collection, after_first_batch, tmp_path, capsys
):
    valid = _images(tmp_path / "photos")
    service = restartable_stack.service

    def kill_then_restart_soon():
        _kill(service)
        threading.Timer(1.0, lambda: service.start(wait=False)).start()

    after_first_batch(kill_then_restart_soon)
    code = _import(restartable_stack, tmp_path / "photos", collection)  # default --max-wait: 120 s
    out, err = capsys.readouterr()

    assert code == EXIT_FAILED  # done, except the files that are not images
    assert _lines(out)[0] == f"{VALID} stored, 0 skipped (already there), {CORRUPT} failed (of {VALID + CORRUPT})"
    assert f"  {CORRUPT} files: not an image (" in out and "zz-bad-0.jpg" in out
    # no flood: one line when the service went away, one when it came back
    assert len(_lines(err)) == 2, err
    assert "retrying for up to 120 s" in err and "connection refused" in err and "resumed" in err
    _assert_exactly_stored(restartable_stack, collection, valid)

    assert _import(restartable_stack, tmp_path / "photos", collection) == EXIT_FAILED
    out = capsys.readouterr().out
    assert _lines(out)[0] == f"0 stored, {VALID} skipped (already there), {CORRUPT} failed (of {VALID + CORRUPT})"
    _assert_exactly_stored(restartable_stack, collection, valid)


def test_service_that_stays_down_stops_the_import_with_one_line_and_exit_3(
    restartable_stack, service_back, collection, after_first_batch, tmp_path, capsys
):
    valid = _images(tmp_path / "photos")
    after_first_batch(lambda: _kill(restartable_stack.service))
    code = _import(restartable_stack, tmp_path / "photos", collection, "--max-wait", "3")
    out, err = capsys.readouterr()

    left = VALID + CORRUPT - BATCH
    assert code == EXIT_DOWN
    assert _lines(out) == [
        f"{BATCH} stored, 0 skipped (already there), {left} failed (of {VALID + CORRUPT})",
        f"  {left} files: not imported, the import stopped ({', '.join(_names(tmp_path, BATCH, 5))}, … and "
        f"{left - 5} more)",
    ]
    err_lines = _lines(err)
    assert len(err_lines) == 2, err  # the wait, then the stop: whatever the number of files
    assert err_lines[-1].startswith(f"clip-weaviate: import stopped, {left} of {VALID + CORRUPT} files not imported")
    assert "connection refused" in err_lines[-1] and err_lines[-1].endswith("run the same command again to finish")
    _assert_exactly_stored(restartable_stack, collection, valid[:BATCH])

    restartable_stack.service.start()
    assert _import(restartable_stack, tmp_path / "photos", collection) == EXIT_FAILED
    out = capsys.readouterr().out
    assert _lines(out)[0] == (
        f"{VALID - BATCH} stored, {BATCH} skipped (already there), {CORRUPT} failed (of {VALID + CORRUPT})"
    )
    _assert_exactly_stored(restartable_stack, collection, valid)


def _names(tmp_path: Path, start: int, count: int) -> list[str]:
    return [str(tmp_path / "photos" / f"img{i:02}.png") for i in range(start, start + count)]


@pytest.mark.parametrize("probe", ["weaviate-meta", "vectorizer-url"])
def test_import_started_while_the_service_loads_waits_instead_of_failing(
    restartable_stack, service_back, collection, tmp_path, capsys, probe
):
    valid = _images(tmp_path / "photos", corrupt=0)
    service = restartable_stack.service
    _kill(service)
    service.start(wait=False)  # the model loads for a few seconds; meanwhile the service answers 503
    extra = ["--vectorizer-url", service.url] if probe == "vectorizer-url" else []
    code = _import(restartable_stack, tmp_path / "photos", collection, *extra)
    out, err = capsys.readouterr()

    assert code == EXIT_OK
    assert _lines(out) == [f"{VALID} stored, 0 skipped (already there), 0 failed (of {VALID})"]
    assert len(_lines(err)) == 1 and err.startswith("clip-weaviate: waiting up to 120 s: "), err
    _assert_exactly_stored(restartable_stack, collection, valid)
