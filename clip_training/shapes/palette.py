"""Colour families of the synthetic shapes set: which shades a shape of a named colour may have, which
background colours count as that colour's family (a background must never be one), and which
backgrounds are clear enough to be named in a caption.

Colours are handled in HSV (hue in degrees, saturation and value in [0, 1]). A shape of colour ``c`` is
drawn in a shade inside ``SHADES[c]``; the canonical RGB in ``synthetic.COLOURS`` lies inside it.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Shades:
    """A box in HSV: hue from ``hue[0]`` to ``hue[1]`` degrees (``hue[0]`` may be negative, wrapping past
    0), saturation and value ranges."""

    hue: tuple[float, float]
    saturation: tuple[float, float]
    value: tuple[float, float]


SHADES: dict[str, Shades] = {
    "red": Shades((-8, 6), (0.65, 1.0), (0.6, 1.0)),
    "orange": Shades((22, 40), (0.75, 1.0), (0.85, 1.0)),
    "yellow": Shades((47, 62), (0.7, 1.0), (0.82, 1.0)),
    "green": Shades((95, 145), (0.5, 1.0), (0.4, 1.0)),
    "cyan": Shades((176, 196), (0.6, 1.0), (0.7, 1.0)),
    "blue": Shades((213, 242), (0.6, 1.0), (0.55, 1.0)),
    "purple": Shades((262, 296), (0.45, 0.9), (0.4, 0.8)),
    "pink": Shades((315, 350), (0.25, 0.6), (0.88, 1.0)),
}
FAMILY_MARGIN = 15.0  # degrees of hue either side of a colour's shades that still count as its family
MIN_CONTRAST = 80.0  # RGB distance a background keeps from the shape's colour
ACHROMATIC = ("white", "gray", "black")  # background names that are no shape colour


def hsv(rgb: RGB | np.ndarray) -> tuple[float, float, float]:
    """(hue in degrees, saturation, value) of an RGB colour in 0..255."""
    r, g, b = (float(v) / 255.0 for v in rgb)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    return h * 360.0, s, v


def rgb(hue: float, saturation: float, value: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb((hue % 360.0) / 360.0, saturation, value)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _hue_in(hue: float, low: float, high: float) -> bool:
    """Whether ``hue`` lies on the arc from ``low`` to ``high`` (degrees, any offsets)."""
    return (hue - low) % 360.0 <= (high - low)


def shape_shade(colour: str, rng: np.random.Generator) -> RGB:
    """A shade of the named colour, uniform in its box."""
    box = SHADES[colour]
    return rgb(rng.uniform(*box.hue), rng.uniform(*box.saturation), rng.uniform(*box.value))


def in_family(colour: RGB | np.ndarray, family: str) -> bool:
    """Whether a colour belongs to a named shape colour's family: chromatic enough (saturation ≥ 0.15,
    value ≥ 0.15) with a hue within ``FAMILY_MARGIN`` of the family's shades. Darker, paler or duller
    shades of the same hue count (brown is orange's family, olive is yellow's)."""
    h, s, v = hsv(colour)
    low, high = SHADES[family].hue
    return s >= 0.15 and v >= 0.15 and _hue_in(h, low - FAMILY_MARGIN, high + FAMILY_MARGIN)


def background_name(colour: RGB | np.ndarray) -> str | None:
    """The name a caption may give a plain background of this colour, or None when it is no clear colour
    (muted and in-between shades stay unnamed)."""
    h, s, v = hsv(colour)
    if s < 0.12:
        if v >= 0.85:
            return "white"
        if v <= 0.18:
            return "black"
        if 0.3 <= v <= 0.75:
            return "gray"
        return None
    for name, box in SHADES.items():
        low, high = box.hue
        clear_s = max(0.35, box.saturation[0] - 0.1)
        if _hue_in(h, low, high) and s >= clear_s and box.value[0] - 0.1 <= v <= box.value[1]:
            return name
    return None


def contrast(a: RGB | np.ndarray, b: RGB | np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def background_colour(rng: np.random.Generator, avoid: str, shade: RGB, achromatic: float = 0.3) -> RGB:
    """Any colour outside ``avoid``'s family and at least ``MIN_CONTRAST`` from ``shade``: with
    probability ``achromatic`` a white-to-black gray, otherwise a hue with saturation and value drawn
    widely (muted shades included)."""
    while True:
        if rng.random() < achromatic:
            colour = rgb(0.0, rng.uniform(0.0, 0.1), rng.uniform(0.05, 1.0))
        else:
            colour = rgb(rng.uniform(0.0, 360.0), rng.uniform(0.12, 1.0), rng.uniform(0.15, 1.0))
        if not in_family(colour, avoid) and contrast(colour, shade) >= MIN_CONTRAST:
            return colour
