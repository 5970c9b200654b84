"""Logging: one handler and format for everything, probes at debug."""

import io
import json
import logging
import os
import warnings

import pytest

from vectorizer_module.logs import setup_logging
from vectorizer_module.metrics import Metrics
from vectorizer_module.server import access


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logging.captureWarnings(False)  # a command run by an earlier test (export-onnx, …) may have left it on
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_a_library_warning_is_a_json_line_like_the_others(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("info", "auto")  # not a terminal: JSON
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("this argument is deprecated", FutureWarning, stacklevel=1)
    logging.getLogger("vectorizer_module.test").info("served")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry["level"] for entry in lines] == ["warning", "info"]
    assert "FutureWarning: this argument is deprecated" in lines[0]["message"]


def test_auto_is_plain_text_on_a_terminal(monkeypatch):
    stream = Terminal()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("info", "auto")
    logging.getLogger("vectorizer_module.test").info("served")
    line = stream.getvalue().strip()
    assert line.endswith(f"INFO vectorizer_module.test[{os.getpid()}]: served")
    assert not line.startswith("{")


@pytest.mark.parametrize(
    "endpoint,status,level",
    [
        ("/meta", 200, logging.DEBUG),
        ("/.well-known/ready", 204, logging.DEBUG),
        ("/.well-known/ready", 503, logging.DEBUG),  # polled every second while the model loads
        ("/meta", 401, logging.INFO),
        ("/vectorize", 200, logging.INFO),
        ("/vectorize", 503, logging.INFO),
    ],
)
def test_probes_are_logged_at_debug_and_work_at_info(caplog, endpoint, status, level):
    caplog.set_level(logging.DEBUG, logger="vectorizer_module.access")
    access.record(Metrics(), "GET", endpoint, status, 0.001, "id")
    assert [record.levelno for record in caplog.records] == [level]
