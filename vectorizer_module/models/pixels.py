"""Pixel steps shared by the families' image recipes (CLIP's, SigLIP's, OpenCLIP's): plain numpy and
arithmetic, no model library."""

from __future__ import annotations

import numpy as np


def rescale_and_normalize(pixels: np.ndarray, scale: float, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 HWC pixels → float32 CHW, as transformers' PIL image processors do it (the rescale in
    float64, then float32)."""
    scaled = (pixels.astype(np.float64) * scale).astype(np.float32)
    return ((scaled - mean) / std).transpose(2, 0, 1)


def shortest_edge_size(width: int, height: int, edge: int) -> tuple[int, int]:
    """(width, height) with the shorter side resized to ``edge`` and the aspect ratio kept, the longer
    side truncated: how transformers' CLIP processor and torchvision's ``Resize(edge)`` both size it."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(edge * long / short)
    return (edge, new_long) if width <= height else (new_long, edge)
