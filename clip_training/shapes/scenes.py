"""Varied scenes: one named shape of a named colour, drawn in one of a regime's styles on one of its
backgrounds, at a continuous size and position, on a canvas of some size and aspect, saved as PNG or
JPEG; sometimes with a second, smaller distractor shape that no caption names.

Two regimes, fixed here before any model was trained on them and never tuned on:

- ``TRAINING`` (the train and validation splits): shapes filled or outlined, with or without
  anti-aliasing, turned, stretched and wobbled a little; ``backgrounds.TRAINING`` kinds; canvases with a
  shorter side of 0.75-3x the base size (48-192 px for the base 64), square or up to 3:2; PNG or JPEG of
  quality 35-95.
- ``WILD`` (the wild split): shapes filled with a black, white or dark-gray border ("bordered"), filled
  over a soft drop shadow ("shadowed"), filled with blurred edges ("soft") or filled with a light-to-dark
  ramp ("shaded"), none of which training draws; ``backgrounds.WILD`` kinds; canvases with a shorter
  side of 3.5-5x the base (224-320 px) and aspect ratios of 3:2 to 16:9 when not square; JPEG of
  quality 30-95; no distractor shape (relevance by attributes would count an image that shows what a
  query names as wrong). Turning, stretching, wobbling, anti-aliasing, sizes and positions are drawn as in
  training.

A size is named ("small", "large") only when the shape's diameter lies in ``SIZE_RANGES``, a position
only when its centre lies in ``REGIONS``; both are fractions of the canvas's centred square, the part
a CLIP processor keeps after its centre crop (the shape is always inside it).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clip_training.shapes import backgrounds, palette
from clip_training.shapes.outlines import MAX_TURN, outline

SIZE_RANGES = {"small": (0.14, 0.30), "large": (0.40, 0.62)}  # diameter / square side
REGIONS = {  # (x range, y range) of the centre / square side
    "left": ((0.15, 0.36), (0.36, 0.64)),
    "right": ((0.64, 0.85), (0.36, 0.64)),
    "top": ((0.36, 0.64), (0.15, 0.36)),
    "bottom": ((0.36, 0.64), (0.64, 0.85)),
    "center": ((0.42, 0.58), (0.42, 0.58)),
}
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Regime:
    """What a split may draw."""

    name: str
    styles: tuple[str, ...]
    backgrounds: tuple[str, ...]
    side: tuple[float, float]  # shorter canvas side, in multiples of the base size
    aspect: tuple[float, float]  # longer / shorter side when not square
    square: float  # probability of a square canvas
    png: float  # probability of PNG rather than JPEG
    quality: tuple[int, int]  # JPEG quality, inclusive
    distractor: float = 0.15  # probability of a distractor shape


TRAINING = Regime(
    "training",
    styles=("filled", "outlined"),
    backgrounds=tuple(backgrounds.TRAINING),
    side=(0.75, 3.0),
    aspect=(1.05, 1.5),
    square=0.7,
    png=0.4,
    quality=(35, 95),
)
WILD = Regime(
    "wild",
    styles=("bordered", "shadowed", "soft", "shaded"),
    backgrounds=tuple(backgrounds.WILD),
    side=(3.5, 5.0),
    aspect=(1.5, 1.78),
    square=0.5,
    png=0.0,
    quality=(30, 95),
    distractor=0.0,  # an image with a red star beside its blue square is a fair answer to "a red star"
)


@dataclass(frozen=True)
class Figure:
    """One shape on the canvas: centre and diameter as fractions of the square side."""

    colour: str
    shape: str
    shade: tuple[int, int, int]
    x: float
    y: float
    diameter: float
    turn: float
    stretch: float
    wobble: float


@dataclass(frozen=True)
class Scene:
    figure: Figure
    distractor: Figure | None
    style: str
    antialias: bool
    stroke: float  # outline width / radius (outlined and bordered styles)
    background: str
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    width: int
    height: int
    fmt: str  # "png" or "jpeg"
    quality: int

    def attributes(self) -> dict[str, str]:
        """The named attributes of the scene: colour and shape always; size, position and background
        when they are clear enough to name."""
        out = {}
        size = next((n for n, (lo, hi) in SIZE_RANGES.items() if lo <= self.figure.diameter <= hi), None)
        if size:
            out["size"] = size
        out["colour"], out["shape"] = self.figure.colour, self.figure.shape
        position = region_of(self.figure.x, self.figure.y)
        if position:
            out["position"] = position
        if self.background in backgrounds.ONE_COLOUR:
            name = palette.background_name(self.colours[0])
            if name and not (name in palette.SHADES and palette.in_family(self.colours[0], self.figure.colour)):
                out["background"] = name
        return out

    def description(self) -> dict[str, object]:
        """How the scene was drawn (written beside the captions; not used for relevance)."""
        return {
            "style": self.style,
            "antialias": self.antialias,
            "background": self.background,
            "width": self.width,
            "height": self.height,
            "format": self.fmt,
            "distractor": None if self.distractor is None else f"{self.distractor.colour} {self.distractor.shape}",
        }


def region_of(x: float, y: float) -> str | None:
    return next((n for n, ((x0, x1), (y0, y1)) in REGIONS.items() if x0 <= x <= x1 and y0 <= y <= y1), None)


# -- sampling ------------------------------------------------------------------------------------------
def _margin(diameter: float) -> float:
    return 0.6 * diameter + 0.02


def _size(rng: np.random.Generator) -> float:
    u = rng.random()
    if u < 0.45:
        return float(rng.uniform(*SIZE_RANGES["small"]))
    if u < 0.9:
        return float(rng.uniform(*SIZE_RANGES["large"]))
    return float(rng.uniform(SIZE_RANGES["small"][1], SIZE_RANGES["large"][0]))


def _place(diameter: float, rng: np.random.Generator) -> tuple[float, float]:
    """A centre for a shape of ``diameter``: mostly inside a named region, sometimes anywhere it fits."""
    m = _margin(diameter)
    if rng.random() < 0.8:
        fits = []
        for (x0, x1), (y0, y1) in REGIONS.values():
            box = (max(x0, m), min(x1, 1 - m), max(y0, m), min(y1, 1 - m))
            if box[0] <= box[1] and box[2] <= box[3]:
                fits.append(box)
        x0, x1, y0, y1 = fits[int(rng.integers(len(fits)))]
        return float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
    return float(rng.uniform(m, 1 - m)), float(rng.uniform(m, 1 - m))


def _figure(colour: str, shape: str, diameter: float, x: float, y: float, rng: np.random.Generator) -> Figure:
    turn = 0.0 if rng.random() < 0.4 else float(rng.uniform(-1, 1) * MAX_TURN[shape])
    stretch = 1.0 if rng.random() < 0.5 else float(math.exp(rng.uniform(-0.15, 0.15)))
    wobble = 0.0 if rng.random() < 0.6 else float(rng.uniform(0.03, 0.1))
    return Figure(colour, shape, palette.shape_shade(colour, rng), x, y, diameter, turn, stretch, wobble)


def _distractor(
    main: Figure, colours: list[str], shapes: list[str], ground: tuple, rng: np.random.Generator
) -> Figure | None:
    """A smaller shape of another colour family and shape, clear of the main one and of the background's
    families; None when it does not fit."""
    others = [c for c in colours if c != main.colour and not any(palette.in_family(g, c) for g in ground)]
    if not others:
        return None
    colour = others[int(rng.integers(len(others)))]
    shape = [s for s in shapes if s != main.shape][int(rng.integers(len(shapes) - 1))]
    diameter = max(0.08, main.diameter * float(rng.uniform(0.3, 0.55)))
    m = _margin(diameter)
    for _ in range(30):
        x, y = rng.uniform(m, 1 - m, 2)
        if math.hypot(x - main.x, y - main.y) >= 0.6 * (main.diameter + diameter) + 0.03:
            return _figure(colour, shape, diameter, float(x), float(y), rng)
    return None


def sample_scene(
    colour: str,
    shape: str,
    regime: Regime,
    rng: np.random.Generator,
    base: int = 64,
    colours: list[str] | None = None,
    shapes: list[str] | None = None,
) -> Scene:
    """A scene of one ``colour`` ``shape`` drawn from ``regime``; ``colours`` and ``shapes`` are what a
    distractor may be (default: every colour with shades, and this shape's siblings in ``outlines``)."""
    colours = colours or list(palette.SHADES)
    shapes = shapes or list(MAX_TURN)
    diameter = _size(rng)
    x, y = _place(diameter, rng)
    figure = _figure(colour, shape, diameter, x, y, rng)
    style = regime.styles[int(rng.integers(len(regime.styles)))]
    if style == "outlined" and diameter < 0.22:
        style = "filled"  # a thin outline of a small shape is a few pixels once the model resizes it
    background = regime.backgrounds[int(rng.integers(len(regime.backgrounds)))]
    first = palette.background_colour(rng, colour, figure.shade)
    second = palette.background_colour(rng, colour, figure.shade)
    distractor = None
    if rng.random() < regime.distractor:
        distractor = _distractor(figure, colours, shapes, (first, second), rng)
    side = int(round(base * rng.uniform(*regime.side)))
    if rng.random() < regime.square:
        width = height = side
    else:
        longer = int(round(side * rng.uniform(*regime.aspect)))
        width, height = (longer, side) if rng.random() < 0.5 else (side, longer)
    fmt = "png" if rng.random() < regime.png else "jpeg"
    return Scene(
        figure=figure,
        distractor=distractor,
        style=style,
        antialias=bool(rng.random() < 0.75),
        stroke=float(rng.uniform(0.15, 0.35)),
        background=background,
        colours=(first, second),
        width=width,
        height=height,
        fmt=fmt,
        quality=int(rng.integers(regime.quality[0], regime.quality[1] + 1)),
    )


# -- drawing -------------------------------------------------------------------------------------------
def _mask(scene: Scene, figure: Figure, rng: np.random.Generator, stroke: float | None = None) -> np.ndarray:
    """The figure's coverage (0..1) on the canvas: filled, or a stroke ``stroke`` radii wide."""
    scale = SUPERSAMPLE if scene.antialias else 1
    side = min(scene.width, scene.height)
    ox, oy = (scene.width - side) / 2, (scene.height - side) / 2
    radius = figure.diameter * side / 2
    points = outline(
        figure.shape,
        (ox + figure.x * side) * scale,
        (oy + figure.y * side) * scale,
        radius * scale,
        figure.turn,
        figure.stretch,
        figure.wobble,
        rng,
    )
    mask = Image.new("L", (scene.width * scale, scene.height * scale), 0)
    draw = ImageDraw.Draw(mask)
    if stroke is None:
        draw.polygon(points, fill=255)
    else:
        width = max(1, int(round(max(stroke * radius, 0.02 * side) * scale)))
        draw.line(points + points[:2], fill=255, width=width, joint="curve")
    if scale > 1:
        mask = mask.resize((scene.width, scene.height), Image.Resampling.BOX)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _paint(pixels: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return alpha[..., None] * colour + (1.0 - alpha[..., None]) * pixels


def _blur(alpha: np.ndarray, radius: float) -> np.ndarray:
    image = Image.fromarray(np.clip(alpha * 255.0, 0, 255).astype(np.uint8), "L")
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _draw_figure(pixels: np.ndarray, scene: Scene, figure: Figure, rng: np.random.Generator) -> np.ndarray:
    side = min(scene.width, scene.height)
    shade = np.array(figure.shade, dtype=np.float32)
    grain = rng.normal(0.0, rng.uniform(0.0, 6.0), pixels.shape[:2] + (1,)).astype(np.float32)
    colour = shade[None, None, :] + grain
    if scene.style == "outlined":
        return _paint(pixels, _mask(scene, figure, rng, scene.stroke), colour)
    # the outline's wobble is drawn from rng, so every mask of one figure needs the same draws
    state = rng.bit_generator.state
    alpha = _mask(scene, figure, rng)
    if scene.style == "shadowed":
        shift = int(round(figure.diameter * side * rng.uniform(0.06, 0.12)))
        shadow = np.roll(alpha, (shift, shift), axis=(0, 1))
        shadow = _blur(shadow, max(1.0, 0.02 * side)) * rng.uniform(0.35, 0.6)
        pixels = pixels * (1.0 - shadow[..., None])
    elif scene.style == "soft":
        alpha = _blur(alpha, figure.diameter * side * rng.uniform(0.04, 0.08))
    elif scene.style == "shaded":
        ys, xs = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]].astype(np.float32)
        angle = rng.uniform(0, 2 * math.pi)
        t = (xs * math.cos(angle) + ys * math.sin(angle)) / (figure.diameter * side)
        t = t - t[alpha > 0.5].mean() if (alpha > 0.5).any() else t
        light = np.clip(1.0 + 0.25 * t, 0.8, 1.15)
        colour = colour * light[..., None]
    pixels = _paint(pixels, alpha, colour)
    if scene.style == "bordered":
        rng.bit_generator.state = state
        border = _mask(scene, figure, rng, scene.stroke * 0.5)
        ink = np.array([(15, 15, 15), (245, 245, 245), (70, 70, 70)][int(rng.integers(3))], dtype=np.float32)
        pixels = _paint(pixels, border, ink)
    return pixels


def draw_scene(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """The scene as an RGB image (the same scene and rng state give the same pixels)."""
    a, b = (np.array(c, dtype=np.float32) for c in scene.colours)
    pixels = backgrounds.TRAINING.get(scene.background, backgrounds.WILD.get(scene.background))(
        scene.width, scene.height, a, b, rng
    )
    if scene.distractor is not None:
        pixels = _draw_figure(pixels, scene, scene.distractor, rng)
    pixels = _draw_figure(pixels, scene, scene.figure, rng)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, scene: Scene) -> bytes:
    buffer = io.BytesIO()
    if scene.fmt == "png":
        image.save(buffer, format="PNG", optimize=False)
    else:
        image.save(buffer, format="JPEG", quality=scene.quality)
    return buffer.getvalue()
