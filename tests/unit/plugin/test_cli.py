"""``clip-weaviate`` errors are one line, not tracebacks, with an exit code per kind (no server needed)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import pytest

from plugin_api.cli import EXIT_DOWN, EXIT_FAILED, EXIT_OK, EXIT_USAGE, build_parser, format_hits, main
from plugin_api.processes import free_ports
from plugin_api.search import Hit


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plugin_api", *args], capture_output=True, text=True, timeout=120)


def test_unreachable_weaviate_is_one_clear_line_and_exit_3():
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    for args in (["search", "a dog", "--url", url], ["import", __file__, "--url", url, "--max-wait", "0"]):
        result = _run(*args)
        assert result.returncode == EXIT_DOWN == 3
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert f"cannot reach Weaviate at {url}" in result.stderr and "clip-weaviate up" in result.stderr


def test_import_waits_for_weaviate_up_to_max_wait_and_says_so_once(capsys):
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    started = time.monotonic()
    assert main(["import", __file__, "--url", url, "--max-wait", "1", "--quiet"]) == EXIT_DOWN
    waited = time.monotonic() - started
    err = capsys.readouterr().err.strip().splitlines()
    assert 1 <= waited < 10
    assert len(err) == 2, err  # "waiting up to 2 s: ..." once, then the one line that gives up
    assert err[0].startswith("clip-weaviate: waiting up to 1 s: cannot reach Weaviate")
    assert "nothing imported" in err[1] and "waited 1 s" in err[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["search"], "give a query text or --image FILE"),
        (["search", "x", "--image", "y.png"], "give a query text or --image FILE"),
        (["search", "--image", "y.png", "--hybrid"], "--hybrid works with a query text"),
        (["search", "--image", "/definitely/not/here.png"], "no such file: /definitely/not/here.png"),
        (["import", "/definitely/not/here/"], "no such file or folder: /definitely/not/here/"),
    ],
)
def test_usage_errors_exit_2(args, message, capsys):
    assert main(args) == EXIT_USAGE == 2
    err = capsys.readouterr().err
    assert err.startswith("clip-weaviate: ") and len(err.strip().splitlines()) == 1
    assert message in err


def test_import_checks_its_paths_before_contacting_weaviate(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no images here")
    with socket.socket() as weaviate:  # a "Weaviate" that records whether anyone connected
        weaviate.bind(("127.0.0.1", 0))
        weaviate.listen()
        weaviate.setblocking(False)
        url = f"http://127.0.0.1:{weaviate.getsockname()[1]}"
        assert main(["import", str(tmp_path / "missing.jpg"), str(tmp_path), "--url", url]) == EXIT_USAGE
        assert f"no such file or folder: {tmp_path / 'missing.jpg'}" in capsys.readouterr().err
        assert main(["import", str(tmp_path), "--url", url]) == EXIT_USAGE
        assert "no image files in" in capsys.readouterr().err
        with pytest.raises(BlockingIOError):
            weaviate.accept()  # nobody knocked


@pytest.mark.parametrize("flag", ["--port", "--vectorizer-port", "--gossip-port", "--raft-rpc-port"])
def test_up_refuses_a_taken_port_naming_its_flag(flag, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        rest, grpc = free_ports(2)  # the defaults 8080 and 50051 may be taken on this host
        others = {"--port": rest, "--grpc-port": grpc, flag: port}
        assert main(["up", *(str(part) for item in others.items() for part in item)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and f"choose another with {flag}" in err


def test_up_refuses_one_port_for_two_uses(capsys):
    port = str(free_ports(1)[0])
    assert main(["demo", "--vectorizer-port", port, "--raft-port", port]) == EXIT_USAGE
    assert "--vectorizer-port and --raft-port are both" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["up", "--data-port", "70000"])
    assert exit_info.value.code == EXIT_USAGE
    assert "not a port number: 70000" in capsys.readouterr().err


def test_help_documents_every_exit_code():
    help_text = build_parser()._subparsers._group_actions[0].choices["import"].format_help()
    documented = {int(code) for code in re.findall(r"^  (\d+)  ", help_text, re.MULTILINE)}
    assert documented == {EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DOWN}


def test_format_hits_shows_file_name_caption_and_distance_not_uuids():
    uuid = "0b9c3c5e-6f5e-5b8a-9d61-2f1e8f0e7a11"
    hits = [
        Hit(uuid, 0.1234, None, {"caption": "a cat", "filename": "cat.png", "empty": None, "tags": ["pet"]}),
        Hit("1f2e3d4c-0000-5000-8000-000000000000", None, 0.5, {}),
    ]
    lines = format_hits(hits).splitlines()
    assert lines[0] == "  1. distance 0.1234  cat.png  \"a cat\"  tags=['pet']"
    assert uuid[:8] not in lines[0]
    assert lines[1] == "  2. score 0.5000  id 1f2e3d4c"  # no file name: a short id
    assert format_hits([]) == "(no results)"
