"""``clip-weaviate`` import and search against the real stack, and its errors when a part is down."""

from __future__ import annotations

from plugin_api.cli import main
from plugin_api.processes import free_ports
from plugin_api.schema import create_image_collection
from plugin_api.sample import write_sample


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

    assert main(["search", "--image", str(sample / "green-square.png"), "--limit", "2", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "filename='green-square.png'" in lines[0] and "distance 0.0000" in lines[0]

    assert main(["search", "yellow", "--hybrid", "--alpha", "0", "--limit", "3", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert all("yellow" in line for line in out)        # the three yellow shapes, by keyword


def test_clear_error_when_the_inference_service_is_unreachable(stack, client, collection_name, capsys):
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    create_image_collection(client, collection_name, inference_url=dead)
    code = main(["search", "anything", "--collection", collection_name, *_connection(stack)])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "near_text" in err and dead.split("//")[1] in err
