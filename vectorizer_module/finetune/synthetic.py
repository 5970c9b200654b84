"""A seeded synthetic image-caption set: rendered shapes of a colour, size and position on a background.

Every image shows one shape. Its captions name the colour and shape, and some also the size, the
position or the background. Each caption line records which attributes it names (``attributes``) and
all attributes of its image (``image_attributes``), so retrieval can be judged by attributes: an image
is relevant to a caption when it has every attribute the caption names.

Splits: ``train`` and ``validation`` use the same colour+shape combinations; ``test`` uses only the
held-out combinations (``HELD_OUT``), never seen in training, so it measures whether the model composes
a colour and a shape it only saw apart. Colour ``i`` is held out with shapes ``i+1`` and ``i+3`` (mod 8):
each colour and each shape is held out twice, and a test query such as "a red star" has distractors of
the same colour ("a red square") and of the same shape ("a cyan star").

Everything is drawn from ``numpy.random.default_rng([seed, split, index])``, so one image does not
depend on the others and the same seed writes the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 140, 20),
    "yellow": (235, 210, 30),
    "green": (40, 160, 60),
    "cyan": (30, 190, 210),
    "blue": (35, 70, 215),
    "purple": (130, 50, 180),
    "pink": (245, 125, 185),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross", "heart", "crescent")
SIZES = {"small": (0.22, 0.28), "large": (0.42, 0.50)}  # diameter as a fraction of the image side
POSITIONS = {  # (x range, y range) of the shape's centre, fractions of the side
    "left": ((0.24, 0.32), (0.38, 0.62)),
    "right": ((0.68, 0.76), (0.38, 0.62)),
    "top": ((0.38, 0.62), (0.24, 0.32)),
    "bottom": ((0.38, 0.62), (0.68, 0.76)),
    "center": ((0.44, 0.56), (0.44, 0.56)),
}
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
BACKGROUNDS = {"white": (242, 242, 242), "black": (22, 22, 22), "gray": (128, 128, 128)}
HELD_OUT_OFFSETS = (1, 3)
SPLITS = ("train", "validation", "test")
ATTRIBUTE_ORDER = ("size", "colour", "shape", "position", "background")

# caption kinds: the attributes named, and the templates that name them
TEMPLATES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("colour", "shape"): (
        "a {colour} {shape}",
        "a picture of a {colour} {shape}",
        "{colour} {shape}",
        "a drawing of a {colour} {shape}",
        "a {colour} {shape} shape",
    ),
    ("size", "colour", "shape"): ("a {size} {colour} {shape}", "a picture of a {size} {colour} {shape}"),
    ("colour", "shape", "position"): ("a {colour} {shape} {position}", "{position}, a {colour} {shape}"),
    ("size", "colour", "shape", "position"): (
        "a {size} {colour} {shape} {position}",
        "a picture of a {size} {colour} {shape} {position}",
    ),
    ("colour", "shape", "background"): ("a {colour} {shape} on a {background} background",),
}


def held_out_combinations() -> frozenset[tuple[str, str]]:
    """The colour+shape combinations of the test split, absent from train and validation."""
    colours = list(COLOURS)
    return frozenset(
        (colours[i], SHAPES[(i + offset) % len(SHAPES)]) for i in range(len(colours)) for offset in HELD_OUT_OFFSETS
    )


def split_combinations(split: str) -> list[tuple[str, str]]:
    held_out = held_out_combinations()
    every = [(colour, shape) for colour in COLOURS for shape in SHAPES]
    if split == "test":
        return [combo for combo in every if combo in held_out]
    if split in ("train", "validation"):
        return [combo for combo in every if combo not in held_out]
    raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


# -- drawing -------------------------------------------------------------------------------------------
Point = tuple[float, float]


def _polygon(cx: float, cy: float, radii: Sequence[float], start_deg: float = -90.0) -> list[Point]:
    step = 360.0 / len(radii)
    return [
        (cx + r * math.cos(math.radians(start_deg + i * step)), cy + r * math.sin(math.radians(start_deg + i * step)))
        for i, r in enumerate(radii)
    ]


def _draw_circle(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)


def _draw_square(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    h = 0.82 * r
    d.rectangle((cx - h, cy - h, cx + h, cy + h), fill=255)


def _draw_triangle(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    d.polygon(_polygon(cx, cy + 0.22 * r, [1.1 * r] * 3), fill=255)


def _draw_star(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    d.polygon(_polygon(cx, cy + 0.08 * r, [1.05 * r, 0.45 * r] * 5), fill=255)


def _draw_diamond(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    d.polygon([(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)], fill=255)


def _draw_cross(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    t = 0.32 * r
    d.rectangle((cx - r, cy - t, cx + r, cy + t), fill=255)
    d.rectangle((cx - t, cy - r, cx + t, cy + r), fill=255)


def _draw_heart(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    lobe = 0.52 * r
    for side in (-1, 1):
        x = cx + side * 0.46 * r
        d.ellipse((x - lobe, cy - 0.3 * r - lobe, x + lobe, cy - 0.3 * r + lobe), fill=255)
    d.polygon([(cx - 0.96 * r, cy - 0.16 * r), (cx + 0.96 * r, cy - 0.16 * r), (cx, cy + 0.95 * r)], fill=255)


def _draw_crescent(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    _draw_circle(d, cx, cy, r)
    bite = 0.82 * r
    d.ellipse((cx + 0.42 * r - bite, cy - 0.2 * r - bite, cx + 0.42 * r + bite, cy - 0.2 * r + bite), fill=0)


DRAW: dict[str, Callable[[ImageDraw.ImageDraw, float, float, float], None]] = {
    "circle": _draw_circle,
    "square": _draw_square,
    "triangle": _draw_triangle,
    "star": _draw_star,
    "diamond": _draw_diamond,
    "cross": _draw_cross,
    "heart": _draw_heart,
    "crescent": _draw_crescent,
}
SUPERSAMPLE = 4


def render(attributes: dict[str, str], rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One RGB image of ``attributes`` (colour, shape, size, position, background); jitter from ``rng``."""
    big = size * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    lo, hi = SIZES[attributes["size"]]
    radius = rng.uniform(lo, hi) * big / 2
    (x0, x1), (y0, y1) = POSITIONS[attributes["position"]]
    cx, cy = rng.uniform(x0, x1) * big, rng.uniform(y0, y1) * big
    DRAW[attributes["shape"]](ImageDraw.Draw(mask), cx, cy, radius)
    alpha = np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float32)[..., None] / 255.0
    colour = np.clip(np.array(COLOURS[attributes["colour"]]) + rng.integers(-14, 15, 3), 0, 255)
    background = np.array(BACKGROUNDS[attributes["background"]], dtype=np.float32)
    ground = background + rng.normal(0.0, 5.0, (size, size, 1)).astype(np.float32)
    pixels = alpha * colour.astype(np.float32) + (1.0 - alpha) * ground
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def captions(attributes: dict[str, str], rng: np.random.Generator) -> list[tuple[str, dict[str, str]]]:
    """One caption of each kind (a template drawn from ``rng``), with the attributes it names."""
    out = []
    for kind, templates in TEMPLATES.items():
        named = {key: attributes[key] for key in kind}
        words = dict(named)
        if "position" in words:
            words["position"] = POSITION_PHRASES[words["position"]]
        out.append((templates[int(rng.integers(len(templates)))].format(**words), named))
    return out


# -- writing a split -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitSpec:
    """How many images per (colour+shape, size, position) cell each split gets."""

    train: int = 24
    validation: int = 1
    test: int = 2

    def per_cell(self, split: str) -> int:
        return int(getattr(self, split))


def split_attributes(split: str, per_cell: int, seed: int) -> list[dict[str, str]]:
    """Every image's attributes: each combination × size × position, ``per_cell`` times, with a seeded
    background."""
    rng = np.random.default_rng([seed, SPLITS.index(split), 1_000_003])
    backgrounds = list(BACKGROUNDS)
    out = []
    for colour, shape in split_combinations(split):
        for size in SIZES:
            for position in POSITIONS:
                for _ in range(per_cell):
                    background = backgrounds[int(rng.integers(len(backgrounds)))]
                    attributes = dict(size=size, colour=colour, shape=shape, position=position, background=background)
                    out.append({key: attributes[key] for key in ATTRIBUTE_ORDER})
    return out


def write_split(root: Path, split: str, per_cell: int, seed: int, image_size: int = 64) -> Path:
    """Render ``split`` into ``root/split/images`` and write ``root/split/captions.jsonl``."""
    folder = Path(root) / split
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, attributes in enumerate(split_attributes(split, per_cell, seed)):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        name = f"images/{index:06d}.png"
        render(attributes, rng, image_size).save(folder / name, format="PNG", optimize=False)
        for caption, named in captions(attributes, rng):
            lines.append(
                json.dumps({"path": name, "caption": caption, "attributes": named, "image_attributes": attributes})
            )
    captions_file = folder / "captions.jsonl"
    captions_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return captions_file


def write_dataset(
    root: str | Path, seed: int = 0, spec: SplitSpec = SplitSpec(), image_size: int = 64, splits: Sequence[str] = SPLITS
) -> dict[str, Path]:
    """Write the chosen splits under ``root`` and a ``dataset.json`` describing them; returns each
    split's captions file."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = {split: write_split(root, split, spec.per_cell(split), seed, image_size) for split in splits}
    description = {
        "seed": seed,
        "image_size": image_size,
        "colours": list(COLOURS),
        "shapes": list(SHAPES),
        "sizes": list(SIZES),
        "positions": list(POSITIONS),
        "backgrounds": list(BACKGROUNDS),
        "held_out_combinations": sorted(f"{c} {s}" for c, s in held_out_combinations()),
        "images_per_cell": {split: spec.per_cell(split) for split in splits},
        "relevance": "an image is relevant to a caption when it has every attribute the caption names",
    }
    (root / "dataset.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return files
