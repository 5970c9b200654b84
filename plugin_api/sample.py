"""The sample set of ``clip-weaviate demo``: pictures of one coloured shape, drawn the way the built-in
demo model saw them in training (``clip_training.shapes.synthetic``), with a caption per image.

Every colour x shape appears once, at a seeded size, position and background. Two combinations (a red
circle and a blue square) appear in every size and position, so that a query such as "a large blue
square on the left" has close distractors and a right answer that only size and position decide.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

SHOWCASE = (("red", "circle"), ("blue", "square"))  # drawn in every size and position
SEED = 7


@dataclass(frozen=True)
class SampleImage:
    """One picture: its attributes, file name, caption and PNG bytes."""

    colour: str
    shape: str
    size: str
    position: str
    background: str
    png: bytes

    @property
    def name(self) -> str:
        return f"{self.size}-{self.colour}-{self.shape}-{self.position}.png"

    @property
    def caption(self) -> str:
        from clip_training.shapes.synthetic import POSITION_PHRASES

        return (
            f"a {self.size} {self.colour} {self.shape} {POSITION_PHRASES[self.position]} "
            f"on a {self.background} background"
        )


def _attributes(seed: int) -> list[dict[str, str]]:
    import numpy as np

    from clip_training.shapes.synthetic import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES

    rng = np.random.default_rng(seed)

    def pick(options: list[str]) -> str:
        return options[int(rng.integers(len(options)))]

    out = []
    for colour in COLOURS:
        for shape in SHAPES:
            if (colour, shape) in SHOWCASE:
                cells = [(size, position) for size in SIZES for position in POSITIONS]
            else:
                cells = [(pick(list(SIZES)), pick(list(POSITIONS)))]
            for size, position in cells:
                out.append(
                    dict(colour=colour, shape=shape, size=size, position=position, background=pick(list(BACKGROUNDS)))
                )
    return out


def sample_images(seed: int = SEED, image_size: int = 64) -> list[SampleImage]:
    """The whole set (82 images), the same for the same seed. ``image_size`` 64 is what the demo model
    was trained on."""
    import numpy as np

    from clip_training.shapes.synthetic import render

    out = []
    for index, attributes in enumerate(_attributes(seed)):
        buffer = io.BytesIO()
        render(attributes, np.random.default_rng([seed, index]), image_size).save(buffer, "PNG")
        out.append(SampleImage(**attributes, png=buffer.getvalue()))
    return out


def write_sample(directory: str | Path, seed: int = SEED) -> Path:
    """Write the sample set as ``NAME.png`` + ``NAME.txt`` (its caption) files; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for image in sample_images(seed):
        (directory / image.name).write_bytes(image.png)
        (directory / image.name).with_suffix(".txt").write_text(image.caption + "\n")
    return directory
