"""Import inputs: content UUIDs, base64, downscaling, files and folders (no server needed)."""

from __future__ import annotations

import base64
import io
import re
import uuid

import pytest
from PIL import Image

from plugin_api.images import ImageItem, content_uuid, downscale, items_from_paths, to_base64
from tests.media import encode, exif_rotated_jpeg, photo

WEAVIATE_BLOB = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$")


def test_content_uuid_depends_on_the_bytes_only():
    a, b = encode(photo(seed=1), "PNG"), encode(photo(seed=2), "PNG")
    assert content_uuid(a) == content_uuid(bytes(a))
    assert content_uuid(a) != content_uuid(b)
    assert content_uuid(a) != content_uuid(a + b"\0")
    assert uuid.UUID(content_uuid(a)).version == 5


def test_base64_is_a_str_that_weaviate_accepts_as_blob():
    for data in (b"\xff\xfe\x00", encode(photo(), "JPEG"), bytes(range(256))):
        text = to_base64(data)
        assert isinstance(text, str) and WEAVIATE_BLOB.match(text)
        assert base64.b64decode(text) == data


def _size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_downscale_keeps_the_aspect_ratio_and_small_images_unchanged():
    big = encode(photo(width=1000, height=400, seed=3), "PNG")
    small = downscale(big, 250)
    assert _size(small) == (250, 100)
    assert Image.open(io.BytesIO(small)).format == "JPEG"
    assert downscale(big, 1000) is big


def test_downscale_applies_exif_orientation_first():
    rotated = exif_rotated_jpeg(photo(width=600, height=300, seed=4), orientation=6)  # displayed 300 x 600
    assert _size(downscale(rotated, 200)) == (100, 200)


def test_downscale_keeps_transparency_as_png():
    rgba = photo(width=500, height=500).convert("RGBA")
    rgba.putalpha(128)
    out = Image.open(io.BytesIO(downscale(encode(rgba, "PNG"), 100)))
    assert out.format == "PNG" and out.mode == "RGBA" and out.size == (100, 100)


def test_downscale_leaves_undecodable_bytes_to_the_service():
    junk = b"not an image at all"
    assert downscale(junk, 10) is junk
    with pytest.raises(ValueError):
        downscale(junk, 0)


def test_items_from_paths_walks_folders_with_sidecar_captions(tmp_path):
    (tmp_path / "trip" / "day2").mkdir(parents=True)
    (tmp_path / "trip" / "b.png").write_bytes(b"b")
    (tmp_path / "trip" / "b.txt").write_text("  a beach \n")
    (tmp_path / "trip" / "day2" / "a.JPG").write_bytes(b"a")
    (tmp_path / "trip" / "notes.md").write_text("not an image")
    (tmp_path / "single.data").write_bytes(b"s")

    items = items_from_paths([tmp_path / "trip", tmp_path / "single.data"])

    assert [i.properties["filename"] for i in items] == ["b.png", "day2/a.JPG", "single.data"]
    assert items[0].properties["caption"] == "a beach"
    assert "caption" not in items[1].properties
    assert [i.read() for i in items] == [b"b", b"a", b"s"]


def test_unreadable_item_fails_on_read_not_on_listing(tmp_path):
    [item] = items_from_paths([tmp_path / "missing.png"], caption_property=None, filename_property=None)
    assert item.properties == {}
    with pytest.raises(OSError):
        item.read()
    assert ImageItem.from_bytes(b"x", "mem", caption="c").read() == b"x"
