"""Pixel steps shared by the families' image recipes (CLIP's, SigLIP's, OpenCLIP's): plain numpy, PIL
and arithmetic, no model library.

The resizing steps bound the work of an image by what the tower needs, whatever its shape. An image's
pixel count is limited before it is decoded, but its shape could still make resizing a memory bomb: a
1 x 100000 strip whose short side is scaled up to 224 pixels becomes 224 x 22,400,000 (4 GB, seconds of
CPU). No resampling step here makes more than ``MAX_RESAMPLE_FACTOR`` times the pixels the tower takes.
Within that bound (every shape up to 32:1, so every photo) the pixels are exactly the reference
processors'. Beyond it only the part of the image the tower sees is resampled, whose pixels may differ
from a whole resize's (on test strips, bicubic: up to 20 of 255 levels in a third of the pixels, 2 on
average) where a whole resize is what would not fit.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

MAX_RESAMPLE_FACTOR = 32


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


def resize_and_crop(
    image: Image.Image, size: tuple[int, int], left: int, top: int, crop: tuple[int, int], resample: int
) -> np.ndarray:
    """``image`` resized to ``size`` (width, height), then the ``crop`` (width, height) at ``left``,
    ``top``, as uint8 HWC. When the whole resize would pass the bound, only the source region that lands
    in the crop is resampled (PIL's ``box``)."""
    width, height = crop
    if size[0] * size[1] <= MAX_RESAMPLE_FACTOR * width * height:
        if image.size != size:
            image = image.resize(size, resample=resample)
        return np.asarray(image)[top : top + height, left : left + width]
    x_scale, y_scale = image.width / size[0], image.height / size[1]
    box = (left * x_scale, top * y_scale, (left + width) * x_scale, (top + height) * y_scale)
    return np.asarray(image.resize(crop, resample=resample, box=box))


def resize_bounded(image: Image.Image, size: tuple[int, int], resample: int) -> Image.Image:
    """``image`` resized to ``size`` (width, height). PIL resizes one axis, then the other: an image far
    taller (or wider) than the target would make a first pass of target width x its own height, so such
    an image is first reduced by whole factors (PIL's ``reducing_gap``)."""
    if image.size == size:
        return image
    target = size[0] * size[1]
    if max(size[0] * image.height, image.width * size[1]) <= MAX_RESAMPLE_FACTOR * target:
        return image.resize(size, resample=resample)
    return image.resize(size, resample=resample, reducing_gap=2.0)
