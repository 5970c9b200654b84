"""Image bytes → a fully decoded RGB PIL image, or an error that names the item.

- Formats: JPEG (MPO too, as phone cameras write it), PNG, WebP, GIF, BMP, TIFF. Anything else is
  refused as unsupported; the bytes are never handed to other decoders.
- The pixel count is checked from the header, before any pixel is decoded, so a decompression bomb is
  refused at once.
- The image is decoded here, completely, so that a truncated file fails this one item and never a batch.
- Animated GIF/WebP/TIFF: the first frame. EXIF orientation is applied.
- Colour: palette, grey, CMYK and 16-bit images become 8-bit RGB (16-bit values are scaled, not
  clipped). Transparency is flattened onto a white background, as transformers' ``convert_rgb`` does,
  so a transparent PNG gives the same vector as the same picture on white.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vectorizer_module.errors import BadInput, TooLarge

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO
_SUPPORTED_TEXT = "JPEG, PNG, WebP, GIF, BMP or TIFF"
_ALPHA_MODES = frozenset({"RGBA", "LA", "La", "RGBa", "PA"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

# Pillow's own, process-wide bomb check is replaced by the configured per-call limit below, so that the
# error always names the image's size and the setting that raises the limit.
Image.MAX_IMAGE_PIXELS = None


def _to_uint8(image: Image.Image) -> Image.Image:
    """Grey images of 16-bit integers or floats as 8-bit grey, scaled to keep their contrast."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.size and float(np.nanmax(values)) <= 1.0 else 255.0
    else:
        top = 65535.0
    scaled = np.clip(np.nan_to_num(values) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled)


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded image as 8-bit RGB, with transparency flattened onto white."""
    if image.mode in _WIDE_MODES:
        image = _to_uint8(image)
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def decode_image(data: bytes, label: str, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decode ``data`` completely to RGB. ``label`` (e.g. ``images[2]``) starts every error message.
    With ``draft_size``, a JPEG is decoded at the smallest of 1/1, 1/2, 1/4 or 1/8 scale that keeps both
    sides at least that large (the model needs 224 pixels, not 4000): much faster, slightly different
    pixels than a full decode."""
    return load_rgb(open_image(data, label, max_pixels=max_pixels), label, draft_size=draft_size)


def open_image(data: bytes, label: str, *, max_pixels: int) -> Image.Image:
    """Read ``data``'s header only: its format and size, checked against ``max_pixels``; no pixel yet."""
    if not data:
        raise BadInput(f"{label} is empty: expected a base64-encoded image", reason="empty_image")
    try:
        image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError:
        raise BadInput(
            f"{label} is not an image in a supported format ({_SUPPORTED_TEXT}); its first bytes are {data[:8]!r}",
            reason="not_an_image",
        ) from None
    except Exception as exc:  # a corrupt header can raise nearly anything inside a plugin
        raise BadInput(
            f"{label} is not a readable image: {type(exc).__name__}: {exc}", reason="undecodable_image"
        ) from None

    width, height = image.size
    if width < 1 or height < 1:
        raise BadInput(f"{label} has no pixels ({width}x{height})", reason="undecodable_image")
    if width * height > max_pixels:
        raise TooLarge(
            f"{label} is {width}x{height} = {width * height} pixels, above the limit of "
            f"{max_pixels}; raise VECTORIZER_MAX_IMAGE_PIXELS to accept it",
            reason="image_pixels",
        )
    return image


def load_rgb(image: Image.Image, label: str, *, draft_size: int | None = None) -> Image.Image:
    """Decode an image opened by ``open_image`` completely, as 8-bit RGB upright (see ``decode_image``)."""
    width, height = image.size
    try:
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()  # first frame only: we never seek further
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # a broken EXIF block must not lose an otherwise good image
            pass
        return to_rgb(image)
    except MemoryError:
        raise TooLarge(
            f"{label} ({image.format} {width}x{height}) is too large to decode; see VECTORIZER_MAX_IMAGE_PIXELS",
            reason="image_pixels",
        ) from None
    except Exception as exc:
        raise BadInput(
            f"{label} could not be decoded as {image.format} ({width}x{height}): {type(exc).__name__}: {exc}",
            reason="undecodable_image",
        ) from None
