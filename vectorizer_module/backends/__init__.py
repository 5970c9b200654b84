"""Where the towers' forward passes run. A backend answers three things (as TEI's backends do): whether it
can compute (``health``), the largest batch it takes (``max_batch``), and the embeddings of one batch of a
tower's inputs (``embed``). Everything before the batch, tokenising, decoding, resizing, padding, is the
towers' own preprocessing (``models/``) and is the same whatever runs the forward pass. A new backend is
one module here with a ``Backend`` subclass, and its name below (``VECTORIZER_BACKEND`` takes it then)."""

from __future__ import annotations

import importlib

# name -> "module:class" in this package; imported only when chosen (so naming them imports no torch)
BACKENDS = {"torch": "torch_backend:TorchBackend", "onnx": "onnx_backend:OnnxBackend"}


def backend_class(name: str) -> type:
    """The ``Backend`` subclass named ``name`` (a key of ``BACKENDS``), its module imported now."""
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
