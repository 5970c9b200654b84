"""Image-caption pairs: read them from a CSV or JSONL file, split off held-out images, and encode them
once into the tensors the towers take.

A pairs file names one image per line and one caption; an image may have several lines (captions).
- CSV: a header with ``path`` and ``caption`` columns (other columns are ignored).
- JSONL: one object per line with ``path`` and ``caption``; optionally ``attributes`` (what the caption
  names, e.g. ``{"colour": "red", "shape": "circle"}``) and ``image_attributes`` (what the image has),
  which allow relevance by attributes (see ``evaluate``).
Relative paths are read from the file's folder, or from ``image_root`` when given.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vectorizer_module.models.base import TextTower, VisionTower
from vectorizer_module.preprocessing.images import decode_image

Attributes = dict[str, str]


class PairsError(ValueError):
    """A pairs file that cannot be used, with what is wrong in it."""


@dataclass(frozen=True)
class Pair:
    image: Path
    caption: str
    attributes: Attributes | None = None
    image_attributes: Attributes | None = None


def _attributes(value: object, where: str) -> Attributes | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PairsError(f"{where}: attributes must be an object of strings")
    return dict(value)


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "caption"} - set(reader.fieldnames or ())
        if missing:
            raise PairsError(
                f"{path}: the CSV header lacks {', '.join(sorted(missing))} "
                f"(it has {', '.join(reader.fieldnames or ()) or 'nothing'})"
            )
        return [dict(row, _line=i + 2) for i, row in enumerate(reader)]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise PairsError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise PairsError(f"{path}:{number}: expected an object with path and caption")
        rows.append(dict(row, _line=number))
    return rows


def read_pairs(path: str | Path, image_root: str | Path | None = None) -> list[Pair]:
    """The pairs listed in a ``.csv`` or ``.jsonl`` file; every image must exist."""
    path = Path(path)
    if not path.is_file():
        raise PairsError(f"pairs file {path} does not exist")
    rows = _read_csv(path) if path.suffix.lower() == ".csv" else _read_jsonl(path)
    root = Path(image_root) if image_root else path.parent
    pairs = []
    checked: dict[str, Path] = {}  # an image has several lines; resolving it costs a system call per folder
    for row in rows:
        where = f"{path}:{row['_line']}"
        image, caption = row.get("path"), row.get("caption")
        if not isinstance(image, str) or not image or not isinstance(caption, str) or not caption.strip():
            raise PairsError(f"{where}: needs a non-empty path and caption")
        image_path = checked.get(image)
        if image_path is None:
            image_path = (root / image).resolve()
            if not image_path.is_file():
                raise PairsError(f"{where}: image {image_path} does not exist")
            checked[image] = image_path
        pairs.append(
            Pair(
                image_path,
                caption,
                _attributes(row.get("attributes"), where),
                _attributes(row.get("image_attributes"), where),
            )
        )
    if not pairs:
        raise PairsError(f"{path} lists no pairs")
    return pairs


def split_held_out(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(kept, held out): a seeded ``fraction`` of the *images*, with all their captions, is held out."""
    images = sorted({pair.image for pair in pairs})
    count = round(len(images) * fraction)
    if not 0 < count < len(images):
        raise PairsError(f"holding out {fraction:.0%} of {len(images)} images leaves no images on one side")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).tolist()
    held = {images[i] for i in order[:count]}
    return [p for p in pairs if p.image not in held], [p for p in pairs if p.image in held]


@dataclass
class PairSet:
    """Pairs indexed for training and evaluation: unique images and unique caption texts."""

    images: list[Path]
    captions: list[str]
    image_captions: list[list[int]]  # caption indices of each image
    caption_attributes: list[Attributes | None]
    image_attributes: list[Attributes | None]
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (image, caption)

    @classmethod
    def from_pairs(cls, pairs: Sequence[Pair]) -> PairSet:
        image_index: dict[Path, int] = {}
        caption_index: dict[str, int] = {}
        out = cls([], [], [], [], [])
        for pair in pairs:
            if pair.image not in image_index:
                image_index[pair.image] = len(out.images)
                out.images.append(pair.image)
                out.image_captions.append([])
                out.image_attributes.append(pair.image_attributes)
            if pair.caption not in caption_index:
                caption_index[pair.caption] = len(out.captions)
                out.captions.append(pair.caption)
                out.caption_attributes.append(pair.attributes)
            i, c = image_index[pair.image], caption_index[pair.caption]
            if c not in out.image_captions[i]:
                out.image_captions[i].append(c)
                out.pairs.append((i, c))
        return out

    @property
    def has_attributes(self) -> bool:
        return all(a is not None for a in self.caption_attributes) and all(a is not None for a in self.image_attributes)


def attribute_codes(pairs: PairSet) -> tuple[torch.Tensor, torch.Tensor]:
    """(caption codes, image codes): one integer per attribute key (sorted) and row, the index of its
    value among that key's values, ``loss.UNNAMED`` (-1) where a caption or image has none."""
    if not pairs.has_attributes:
        raise PairsError("positives by attributes need attributes and image_attributes on every line")
    rows = [a or {} for a in pairs.caption_attributes + pairs.image_attributes]
    keys = sorted({key for row in rows for key in row})
    values = {key: sorted({row[key] for row in rows if key in row}) for key in keys}
    codes = torch.tensor(
        [[values[key].index(row[key]) if key in row else -1 for key in keys] for row in rows], dtype=torch.long
    ).reshape(len(rows), len(keys))
    return codes[: len(pairs.captions)], codes[len(pairs.captions) :]


def encode_images(
    tower: VisionTower, paths: Sequence[Path], batch_size: int = 256, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The vision tower's own preprocessing of every image (decoded as the service decodes uploads),
    written into one tensor allocated up front: concatenating the batches at the end would hold every
    pixel twice at the peak. ``dtype`` stores the pixels narrower (float16 halves a training set's
    memory); default: the processor's own."""
    out: torch.Tensor | None = None
    for start in range(0, len(paths), batch_size):
        images = [
            decode_image(p.read_bytes(), str(p), max_pixels=50_000_000) for p in paths[start : start + batch_size]
        ]
        pixels = tower.preprocess(images)["pixel_values"]
        if out is None:
            out = torch.empty((len(paths), *pixels.shape[1:]), dtype=dtype or pixels.dtype)
        out[start : start + len(pixels)] = pixels
    if out is None:
        raise PairsError("no images to encode")
    return out


def encode_texts(tower: TextTower, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention masks of every text, padded to the longest (batches trim further)."""
    parts = [tower.preprocess([text]) for text in texts]
    batch = tower.collate(parts)
    return batch["input_ids"], batch["attention_mask"]


def trim(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop padding columns that no row of the batch uses."""
    longest = int(mask.sum(dim=1).max())
    return ids[:, :longest], mask[:, :longest]
