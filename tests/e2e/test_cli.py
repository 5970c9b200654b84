"""``clip-weaviate`` import and search against the real stack, and its errors when a part is down."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from plugin_api.cli import EXIT_DOWN, main
from plugin_api.processes import free_ports
from plugin_api.sample import write_sample
from plugin_api.schema import create_image_collection


def _connection(stack) -> list[str]:
    return ["--url", stack.url, "--grpc-port", str(stack.grpc_port)]


def test_import_then_search_by_image_and_text(stack, collection_name, tmp_path, capsys):
    sample = write_sample(tmp_path / "sample")
    count = len(list(sample.glob("*.png")))
    args = ["--collection", collection_name, *_connection(stack)]

    assert main(["import", str(sample), "--quiet", *args]) == 0
    assert f"{count} stored, 0 skipped" in capsys.readouterr().out
    assert main(["import", str(sample), "--quiet", *args]) == 0
    assert f"0 stored, {count} skipped" in capsys.readouterr().out

    query = sorted(sample.glob("*-green-*.png"))[0]
    assert main(["search", "--image", str(query), "--limit", "2", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"  1. distance 0.0000  {query.name}  ")

    assert main(["search", "yellow", "--hybrid", "--alpha", "0", "--limit", "3", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all("yellow" in line for line in out)  # yellow shapes, by keyword


def test_clear_error_when_the_inference_service_is_unreachable(stack, client, collection_name, capsys):
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    create_image_collection(client, collection_name, inference_url=dead)
    code = main(["search", "anything", "--collection", collection_name, *_connection(stack)])
    err = capsys.readouterr().err
    assert code == EXIT_DOWN  # the service is down: a script may retry later
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "near_text" in err and dead.split("//")[1] in err


def _ranked(output: str, title: str) -> list[str]:
    """The file names of the results printed under ``title`` by ``clip-weaviate demo``."""
    block = output.split("\n" + title + "\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[3] for line in block.splitlines()]  # "  1. distance 0.1234  NAME  "caption""


def test_demo_finds_the_named_shapes_first_with_the_builtin_model(weaviate_binary, tmp_path, monkeypatch, capsys):
    """The whole demo on a stack of its own: the built-in model behind a real Weaviate ranks a picture of
    what the query names first (file names are SIZE-COLOUR-SHAPE-POSITION.png). The ports asked for are
    the ones used, and the log folder it announces is there to read afterwards."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the demo's own temporary directory goes here
    service_port, raft_port = free_ports(2)
    args = ["--weaviate-bin", str(weaviate_binary), "--vectorizer-port", str(service_port)]
    assert main(["demo", *args, "--raft-port", str(raft_port)]) == 0
    out = capsys.readouterr().out
    assert "82 stored, 0 skipped (already there), 0 failed" in out
    assert f"clip-vectorizer http://127.0.0.1:{service_port}" in out
    log_dir = Path(out.split("logs in ", 1)[1].split("\n", 1)[0])
    assert log_dir.parent.parent == tmp_path and f"logs kept in {log_dir}" in out
    assert (log_dir / "clip-vectorizer.log").stat().st_size > 0
    assert f"--port {service_port}" in (log_dir / "clip-vectorizer.log").read_text()
    assert not (log_dir.parent / "sample").exists() and not (log_dir.parent / "weaviate-data").exists()
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out)  # no UUIDs
    red_circles = _ranked(out, "near_text 'a red circle'")
    assert len(red_circles) == 3 and all("-red-circle-" in name for name in red_circles)
    assert _ranked(out, "near_text 'a large blue square on the left'")[0] == "large-blue-square-left.png"
    assert "-yellow-star-" in _ranked(out, "near_text 'a yellow star'")[0]
    assert not _ranked(out, "near_text 'a blue square', moved away from 'on the left' (force 0.6)")[0].endswith(
        "-left.png"
    )
    heart = next(line for line in out.splitlines() if line.startswith("near_image "))
    assert _ranked(out, heart)[0] == heart.split()[1]
