"""Images to import: where they come from, their content id, base64, and optional downscaling."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weaviate.util import generate_uuid5

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
UUID_NAMESPACE = "clip-vectorizer/image-sha256"


@dataclass(frozen=True)
class ImageItem:
    """One image and the text properties stored with it. Give ``data`` (in memory) or ``path`` (read
    at import time, so an unreadable file is reported as a failure of that item only)."""

    source: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<memory>", **properties: Any) -> ImageItem:
        return cls(source=source, properties=properties, data=bytes(data))

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ValueError(f"{self.source}: an ImageItem needs data or a path")
        return self.path.read_bytes()


def content_uuid(data: bytes) -> str:
    """A UUID that depends only on the image bytes, so importing the same file again finds it.

    ``generate_uuid5`` hashes ``str(identifier)``; passing the SHA-256 hex digest instead of the bytes
    keeps that string short for large photos.
    """
    return generate_uuid5(hashlib.sha256(data).hexdigest(), UUID_NAMESPACE)


def to_base64(data: bytes) -> str:
    """Standard base64 as ``str``: Weaviate requires it for ``blob`` properties, and the client would send
    ``bytes`` as a list of integers."""
    return base64.b64encode(data).decode("ascii")


def downscale(data: bytes, max_side: int) -> bytes:
    """The image re-encoded so that its longer side is at most ``max_side`` pixels; ``data`` unchanged
    when it is already small enough or cannot be decoded (the service then reports what is wrong).

    CLIP sees 224 x 224 pixels, so any ``max_side`` of a few hundred pixels or more gives nearly the same
    vector while uploads, Weaviate's storage and the service's decoding shrink. EXIF orientation is
    applied first (the re-encoded file has no EXIF); images with transparency stay PNG, others become
    JPEG (quality 90); an animated image keeps its first frame. The stored blob is the smaller copy.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, not {max_side}")
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) <= max_side:
                return data
            image = ImageOps.exif_transpose(image)
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            image = image.convert("RGBA" if has_alpha else "RGB")
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            if has_alpha:
                image.save(out, "PNG", optimize=True)
            else:
                image.save(out, "JPEG", quality=90)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return data


def items_from_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    caption_property: str | None = "caption",
    filename_property: str | None = "filename",
) -> list[ImageItem]:
    """Items for files and folders (walked recursively, image suffixes only, in sorted order).

    A file named explicitly is taken whatever its suffix. ``photo.txt`` next to ``photo.jpg`` is its
    caption. ``filename_property`` stores the path relative to the folder named (or the file's name).
    """
    items: list[ImageItem] = []
    for raw in paths:
        root = Path(raw).expanduser()
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            items.extend(
                _file_item(p, p.relative_to(root).as_posix(), caption_property, filename_property) for p in files
            )
        else:
            items.append(_file_item(root, root.name, caption_property, filename_property))
    return items


def _file_item(path: Path, name: str, caption_property: str | None, filename_property: str | None) -> ImageItem:
    properties: dict[str, Any] = {}
    if filename_property:
        properties[filename_property] = name
    sidecar = path.with_suffix(".txt")
    if caption_property and sidecar.is_file():
        properties[caption_property] = sidecar.read_text(errors="replace").strip()
    return ImageItem(source=str(path), properties=properties, path=path)
