"""A seeded synthetic image-caption set: pictures of one named shape in a named colour, with captions
that name its colour and shape and sometimes its size, position or background.

Each caption line records which attributes it names (``attributes``) and every named attribute of its
image (``image_attributes``), so retrieval can be judged by attributes: an image is relevant to a caption
when it has every attribute the caption names. Lines also say how the image was drawn (``scene``).

Splits:
- ``test``: the held-out colour+shape combinations (``HELD_OUT``), never in train or validation, drawn by
  the classic renderer (``render``: two sizes, five positions, white, black or gray background, 64 px
  PNG) with the classic templates, exactly as the first demo model's test split, so it measures whether
  a model composes a colour and a shape it only saw apart, the same way from one model to the next.
  Colour ``i`` is held out with shapes ``i+1`` and ``i+3`` (mod 8): each colour and each shape is held
  out twice, and a test query such as "a red star" has distractors of the same colour ("a red square")
  and of the same shape ("a cyan star").
- ``train`` and ``validation``: the other 48 combinations, drawn from ``scenes.TRAINING`` (any-colour
  backgrounds never of the shape's colour family, gradients, noise, stripes, checks; filled or outlined
  shapes, turned, stretched, wobbled, with or without anti-aliasing; continuous sizes and positions;
  canvases of several sizes and aspects; PNG or JPEG), a ``CLASSIC_SHARE`` of them by the classic
  renderer, with ``templates.TRAINING`` captions.
- ``wild``: all 64 combinations, drawn from ``scenes.WILD`` with ``templates.WILD``: styles,
  backgrounds, canvas sizes and templates that training never uses, fixed before training and never
  tuned on. It measures whether a model learnt "red" and "circle" rather than the renderer.

Everything is drawn from ``numpy.random.default_rng([seed, split, index])``, so one image does not
depend on the others, and the same seed writes the same bytes with the same numpy and Pillow (JPEG
bytes come from Pillow's libjpeg).
"""

from __future__ import annotations

import functools
import io
import json
import math
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from clip_training.shapes import scenes, templates

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
SPLITS = ("train", "validation", "test", "wild")
ATTRIBUTE_ORDER = ("size", "colour", "shape", "position", "background")
CLASSIC_SHARE = 0.25  # of the train and validation images, drawn by the classic renderer
TEMPLATES = templates.CLASSIC  # the test split's captions


def held_out_combinations() -> frozenset[tuple[str, str]]:
    """The colour+shape combinations of the test split, absent from train and validation."""
    colours = list(COLOURS)
    return frozenset(
        (colours[i], SHAPES[(i + offset) % len(SHAPES)]) for i in range(len(colours)) for offset in HELD_OUT_OFFSETS
    )


def split_combinations(split: str) -> list[tuple[str, str]]:
    held_out = held_out_combinations()
    every = [(colour, shape) for colour in COLOURS for shape in SHAPES]
    if split == "wild":
        return every
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


def captions(
    attributes: dict[str, str],
    rng: np.random.Generator,
    table: dict[tuple[str, ...], tuple[str, ...]] = TEMPLATES,
    counts: dict[tuple[str, ...], int] | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """Captions of each kind in ``table`` whose attributes the image has, with the attributes each names:
    ``counts[kind]`` distinct templates drawn from ``rng`` (default one; 0 or less: every template)."""
    out = []
    for kind, options in table.items():
        if not all(key in attributes for key in kind):
            continue
        named = {key: attributes[key] for key in kind}
        words = dict(named)
        if "position" in words:
            words["position"] = POSITION_PHRASES[words["position"]]
        count = (counts or {}).get(kind, 1)
        if count == 1:
            chosen = [options[int(rng.integers(len(options)))]]
        elif count <= 0 or count >= len(options):
            chosen = list(options)
        else:
            chosen = [options[int(i)] for i in rng.choice(len(options), count, replace=False)]
        out.extend((template.format(**words), named) for template in chosen)
    return out


# -- writing a split -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitSpec:
    """How many images per colour+shape combination and (size, position) cell each split gets: the
    classic test split has 10 cells (2 sizes x 5 positions) per combination; the other splits draw sizes
    and positions continuously, ``per_cell`` x 10 images per combination."""

    train: int = 24
    validation: int = 1
    test: int = 2
    wild: int = 1

    def per_cell(self, split: str) -> int:
        return int(getattr(self, split))


CELLS = len(SIZES) * len(POSITIONS)
TRAINING_CAPTIONS = {("colour", "shape"): 2}  # two phrasings of the main query kind per image
MADE_UP_SHARE = 0.25  # of the training captions, with one made-up word inserted


@functools.cache
def _template_words() -> frozenset[str]:
    """Every word any template or attribute may write (made-up words must be none of them)."""
    texts = [t for table in (templates.TRAINING, templates.WILD) for options in table.values() for t in options]
    texts += [*COLOURS, *SHAPES, *SIZES, *POSITION_PHRASES.values(), *BACKGROUNDS]
    return frozenset(word for text in texts for word in text.replace("{", " ").replace("}", " ").split())


def with_made_up_word(caption: str, rng: np.random.Generator) -> str:
    """``caption`` with a random string of 3-8 letters inserted between two words. A model only ever
    trained on its own small vocabulary has never seen the pieces an unknown word ("illustration")
    tokenizes into, so such a word can move a query's vector anywhere; words like this teach it that
    pieces it does not know name no colour or shape."""
    known = _template_words()
    while True:
        word = "".join(chr(ord("a") + int(i)) for i in rng.integers(0, 26, int(rng.integers(3, 9))))
        if word not in known:
            break
    words = caption.split()
    at = int(rng.integers(len(words) + 1))
    return " ".join(words[:at] + [word] + words[at:])


def training_captions(attributes: dict[str, str], rng: np.random.Generator) -> list[tuple[str, dict[str, str]]]:
    """The train and validation splits' captions: ``templates.TRAINING``, a ``MADE_UP_SHARE`` of them
    with a made-up word."""
    lines = captions(attributes, rng, templates.TRAINING, TRAINING_CAPTIONS)
    return [(with_made_up_word(text, rng) if rng.random() < MADE_UP_SHARE else text, named) for text, named in lines]


WILD_CAPTIONS = {("colour", "shape"): 0}  # every wild template of it, so each template is measured alike


def split_attributes(split: str, per_cell: int, seed: int) -> list[dict[str, str]]:
    """Every classic image's attributes: each combination x size x position, ``per_cell`` times, with a
    seeded background."""
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


def _classic_attributes(colour: str, shape: str, rng: np.random.Generator) -> dict[str, str]:
    def pick(options: Sequence[str]) -> str:
        return options[int(rng.integers(len(options)))]

    return dict(  # in ATTRIBUTE_ORDER
        size=pick(list(SIZES)),
        colour=colour,
        shape=shape,
        position=pick(list(POSITIONS)),
        background=pick(list(BACKGROUNDS)),
    )


def _classic_png(attributes: dict[str, str], rng: np.random.Generator, image_size: int) -> bytes:
    buffer = io.BytesIO()
    render(attributes, rng, image_size).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


@dataclass(frozen=True)
class Drawn:
    """One written image: its file bytes and suffix, named attributes, captions and how it was drawn."""

    data: bytes
    suffix: str
    attributes: dict[str, str]
    captions: list[tuple[str, dict[str, str]]]
    scene: dict[str, object]


def draw_image(split: str, colour: str, shape: str, rng: np.random.Generator, image_size: int = 64) -> Drawn:
    """One image of a varied split (train, validation or wild) with its captions."""
    wild = split == "wild"
    if not wild and rng.random() < CLASSIC_SHARE:
        attributes = _classic_attributes(colour, shape, rng)
        data = _classic_png(attributes, rng, image_size)
        return Drawn(data, "png", attributes, training_captions(attributes, rng), {"style": "classic"})
    regime = scenes.WILD if wild else scenes.TRAINING
    scene = scenes.sample_scene(colour, shape, regime, rng, image_size, list(COLOURS), list(SHAPES))
    attributes = scene.attributes()
    data = scenes.encode(scenes.draw_scene(scene, rng), scene)
    lines = captions(attributes, rng, templates.WILD, WILD_CAPTIONS) if wild else training_captions(attributes, rng)
    return Drawn(data, "png" if scene.fmt == "png" else "jpg", attributes, lines, scene.description())


def _draw_varied(task: tuple[str, str, str, int, int, int]) -> Drawn:
    split, colour, shape, index, seed, image_size = task
    return draw_image(split, colour, shape, np.random.default_rng([seed, SPLITS.index(split), index]), image_size)


def _drawn_split(split: str, per_cell: int, seed: int, image_size: int, workers: int = 1) -> Iterator[Drawn]:
    if split == "test":
        for index, attributes in enumerate(split_attributes(split, per_cell, seed)):
            rng = np.random.default_rng([seed, SPLITS.index(split), index])
            data = _classic_png(attributes, rng, image_size)
            yield Drawn(data, "png", attributes, captions(attributes, rng), {"style": "classic"})
        return
    combos = [combo for combo in split_combinations(split) for _ in range(per_cell * CELLS)]
    tasks = [(split, colour, shape, index, seed, image_size) for index, (colour, shape) in enumerate(combos)]
    if workers <= 1 or len(tasks) < 1000:
        yield from map(_draw_varied, tasks)
        return
    # each image has its own seeded generator, so drawing them in parallel writes the same bytes
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(_draw_varied, tasks, chunksize=256)


def write_split(root: Path, split: str, per_cell: int, seed: int, image_size: int = 64, workers: int = 1) -> Path:
    """Render ``split`` into ``root/split/images`` and write ``root/split/captions.jsonl``. ``image_size``
    is the classic renderer's side and the base of the varied splits' canvas sizes."""
    folder = Path(root) / split
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, drawn in enumerate(_drawn_split(split, per_cell, seed, image_size, workers)):
        name = f"images/{index:06d}.{drawn.suffix}"
        (folder / name).write_bytes(drawn.data)
        for caption, named in drawn.captions:
            line = {"path": name, "caption": caption, "attributes": named, "image_attributes": drawn.attributes}
            if split != "test":  # the test split's file stays as it always was
                line["scene"] = drawn.scene
            lines.append(json.dumps(line))
    captions_file = folder / "captions.jsonl"
    captions_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return captions_file


def write_dataset(
    root: str | Path,
    seed: int = 0,
    spec: SplitSpec = SplitSpec(),
    image_size: int = 64,
    splits: Sequence[str] = SPLITS,
    workers: int = 1,
) -> dict[str, Path]:
    """Write the chosen splits under ``root`` and a ``dataset.json`` describing them; returns each
    split's captions file. ``workers`` processes draw the images (the bytes do not depend on it)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = {split: write_split(root, split, spec.per_cell(split), seed, image_size, workers) for split in splits}
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
        "regimes": {"training": asdict(scenes.TRAINING), "wild": asdict(scenes.WILD)},
        "relevance": "an image is relevant to a caption when it has every attribute the caption names",
    }
    (root / "dataset.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return files
