"""A small generated image set with captions, for ``clip-weaviate demo``: coloured shapes on plain grounds."""

from __future__ import annotations

import io
from pathlib import Path

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = {"white": (250, 250, 250), "black": (15, 15, 15)}


def sample_images(size: int = 160) -> list[tuple[str, str, bytes]]:
    """``(file name, caption, PNG bytes)`` for every colour x shape, alternating backgrounds."""
    from PIL import Image, ImageDraw

    out = []
    for i, (colour, rgb) in enumerate(COLOURS.items()):
        for j, shape in enumerate(SHAPES):
            background = list(BACKGROUNDS)[(i + j) % len(BACKGROUNDS)]
            image = Image.new("RGB", (size, size), BACKGROUNDS[background])
            draw = ImageDraw.Draw(image)
            box = (size * 0.2, size * 0.2, size * 0.8, size * 0.8)
            if shape == "circle":
                draw.ellipse(box, fill=rgb)
            elif shape == "square":
                draw.rectangle(box, fill=rgb)
            else:
                draw.polygon([(size * 0.5, size * 0.15), (size * 0.85, size * 0.8), (size * 0.15, size * 0.8)], fill=rgb)
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            out.append((f"{colour}-{shape}.png", f"a {colour} {shape} on a {background} background", buffer.getvalue()))
    return out


def write_sample(directory: str | Path) -> Path:
    """Write the sample set as ``NAME.png`` + ``NAME.txt`` (its caption) files; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, caption, data in sample_images():
        (directory / name).write_bytes(data)
        (directory / name).with_suffix(".txt").write_text(caption + "\n")
    return directory
