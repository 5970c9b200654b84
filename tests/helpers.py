"""Helpers shared by the tests (and only by them)."""

from __future__ import annotations

from pathlib import Path

from vectorizer_module.config import Settings
from vectorizer_module.engine import Engine
from vectorizer_module.models.loading import detect


def make_engine(model: Path | str, **overrides) -> Engine:
    """A loaded engine over ``model``, with ``Settings`` fields overridden by keyword."""
    engine = Engine(Settings(model=str(model), **overrides), detect(model))
    engine.load()
    return engine
