"""Test images of every supported format and mode, made in memory."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from PIL import Image


def photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: gradients plus noise, different for each seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), np.full_like(x, (seed * 53) % 256)], axis=-1
    )
    noisy = base + rng.normal(0, 20, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_16bit_rgb(width: int = 8, height: int = 6) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 65536, (height, width, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_text(png: bytes, text: str) -> bytes:
    """The same picture with a text chunk after its header: other bytes (another content key), same pixels."""
    return png[:33] + png_chunk(b"tEXt", b"Comment\x00" + text.encode()) + png[33:]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but holds no pixel data (a bomb's shape)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = b"IHDR" + header
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(header))
        + body
        + struct.pack(">I", zlib.crc32(body))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )


def exif_rotated_jpeg(image: Image.Image, orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def animated_gif(frames: list[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def all_formats() -> dict[str, bytes]:
    """One encoded image per supported format and tricky mode."""
    image = photo()
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(image.size))
    grey16 = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    return {
        "jpeg": encode(image, "JPEG", quality=90),
        "jpeg-cmyk": encode(image.convert("CMYK"), "JPEG", quality=90),
        "jpeg-grey": encode(image.convert("L"), "JPEG"),
        "jpeg-exif-rotated": exif_rotated_jpeg(image),
        "png": encode(image, "PNG"),
        "png-palette": encode(image.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "png-palette-transparent": encode(image.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
        "png-rgba": encode(rgba, "PNG"),
        "png-la": encode(rgba.convert("LA"), "PNG"),
        "png-16bit-grey": encode(grey16, "PNG"),
        "png-16bit-rgb": png_16bit_rgb(),
        "png-1bit": encode(image.convert("1"), "PNG"),
        "webp": encode(image, "WEBP", quality=90),
        "webp-lossless-alpha": encode(rgba, "WEBP", lossless=True),
        "gif": encode(image.convert("P"), "GIF"),
        "gif-animated": animated_gif([image.convert("P"), photo(seed=5).convert("P")]),
        "bmp": encode(image, "BMP"),
        "tiff": encode(image, "TIFF"),
        "tiff-16bit-grey": encode(grey16, "TIFF"),
        "tiff-cmyk": encode(image.convert("CMYK"), "TIFF"),
    }
