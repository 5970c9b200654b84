"""Backgrounds of the synthetic shapes set: each kind paints a float RGB array from one or two colours
(``palette.background_colour`` keeps them out of the shape's colour family).

Training kinds (``TRAINING``): plain (with faint noise), linear gradient, strong pixel noise, stripes
at any angle, a checkerboard at any angle. Wild kinds (``WILD``), never drawn for training: radial
gradient, smooth clouds, two colours split by a straight line. (No polka dots: dots are circles, and
an image with green dots would be a fair answer to "a green circle" that relevance by attributes counts wrong.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

Painter = Callable[[int, int, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in units of the shorter side, centred on the image."""
    side = min(width, height)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return (xs + 0.5 - width / 2) / side, (ys + 0.5 - height / 2) / side


def _along(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Each pixel's coordinate along a random direction."""
    xs, ys = _grid(width, height)
    angle = rng.uniform(0, 2 * math.pi)
    return xs * math.cos(angle) + ys * math.sin(angle)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)[..., None]
    return a[None, None, :] * (1.0 - t) + b[None, None, :] * t


def plain(width: int, height: int, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(0.0, 6.0)
    return a[None, None, :] + rng.normal(0.0, sigma, (height, width, 1)).astype(np.float32)


def gradient(width: int, height: int, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    t = _along(width, height, rng)
    return _mix(a, b, (t - t.min()) / max(float(t.max() - t.min()), 1e-6))


def noise(width: int, height: int, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(10.0, 35.0)
    channels = 1 if rng.random() < 0.5 else 3  # gray grain or coloured grain
    return a[None, None, :] + rng.normal(0.0, sigma, (height, width, channels)).astype(np.float32)


def stripes(width: int, height: int, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    period = rng.uniform(0.06, 0.3)
    t = _along(width, height, rng) / period + rng.uniform(0, 1)
    return _mix(a, b, (t % 1.0) < rng.uniform(0.3, 0.7))


def checks(width: int, height: int, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    xs, ys = _grid(width, height)
    angle, cell = rng.uniform(0, math.pi / 2), rng.uniform(0.06, 0.25)
    u = (xs * math.cos(angle) + ys * math.sin(angle)) / cell
    v = (-xs * math.sin(angle) + ys * math.cos(angle)) / cell
    return _mix(a, b, (np.floor(u) + np.floor(v)) % 2)


def radial(width: int, height: int, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    xs, ys = _grid(width, height)
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    distance = np.hypot(xs - cx, ys - cy)
    return _mix(a, b, distance / max(float(distance.max()), 1e-6))


def clouds(width: int, height: int, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cells = int(rng.integers(3, 7))
    coarse = rng.uniform(0.0, 255.0, (cells, cells)).astype(np.float32)
    smooth = Image.fromarray(coarse, "F").resize((width, height), Image.Resampling.BICUBIC)
    return _mix(a, b, np.asarray(smooth, dtype=np.float32) / 255.0)


def split(width: int, height: int, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _mix(a, b, _along(width, height, rng) > rng.uniform(-0.35, 0.35))


TRAINING: dict[str, Painter] = {
    "plain": plain,
    "gradient": gradient,
    "noise": noise,
    "stripes": stripes,
    "checks": checks,
}
WILD: dict[str, Painter] = {"radial": radial, "clouds": clouds, "split": split}
ONE_COLOUR = ("plain", "noise")  # kinds whose colour a caption may name
