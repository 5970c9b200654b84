"""``clip-weaviate`` errors are one line, not tracebacks (no server needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from plugin_api.cli import format_hits, main
from plugin_api.processes import free_ports
from plugin_api.search import Hit


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plugin_api", *args], capture_output=True, text=True, timeout=120)


def test_unreachable_weaviate_is_one_clear_line():
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    for args in (["search", "a dog", "--url", url], ["import", __file__, "--url", url]):
        result = _run(*args)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert f"cannot reach Weaviate at {url}" in result.stderr and "clip-weaviate up" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["search"], "give a query text or --image FILE"),
        (["search", "x", "--image", "y.png"], "give a query text or --image FILE"),
        (["search", "--image", "y.png", "--hybrid"], "--hybrid works with a query text"),
        (["import", "/definitely/not/here/"], None),
    ],
)
def test_argument_errors(args, message, capsys):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("clip-weaviate: ")
    if message:
        assert message in err


def test_up_refuses_a_taken_port(capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["up", "--port", str(port)]) == 1
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err


def test_format_hits():
    hits = [
        Hit("u1", 0.1234, None, {"caption": "a cat", "filename": "cat.png", "empty": None}),
        Hit("u2", None, 0.5, {}),
    ]
    lines = format_hits(hits).splitlines()
    assert lines[0] == "  1. distance 0.1234  u1  caption='a cat', filename='cat.png'"
    assert lines[1].startswith("  2. score 0.5000  u2")
    assert format_hits([]) == "(no results)"
