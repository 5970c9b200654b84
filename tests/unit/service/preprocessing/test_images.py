import time

import numpy as np
import pytest
from PIL import Image

from tests import media
from vectorizer_module.errors import BadInput, TooLarge
from vectorizer_module.preprocessing.images import decode_image

LIMIT = 50_000_000


@pytest.mark.parametrize("name,data", sorted(media.all_formats().items()))
def test_every_supported_format_decodes_to_rgb(name, data):
    image = decode_image(data, "images[0]", max_pixels=LIMIT)
    assert image.mode == "RGB"
    expected = (64, 96) if name == "jpeg-exif-rotated" else (96, 64)
    if name == "png-16bit-rgb":
        expected = (8, 6)
    assert image.size == expected
    assert np.asarray(image).std() > 0, "the picture must survive decoding, not turn flat"


def test_exif_orientation_is_applied():
    image = media.photo()
    rotated = decode_image(media.exif_rotated_jpeg(image, orientation=6), "images[0]", max_pixels=LIMIT)
    upright = decode_image(
        media.encode(image.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=95), "images[0]", max_pixels=LIMIT
    )
    assert rotated.size == upright.size == (64, 96)
    diff = np.abs(np.asarray(rotated, dtype=int) - np.asarray(upright, dtype=int)).mean()
    assert diff < 3  # the same picture, up to JPEG noise


def test_transparency_is_flattened_onto_white():
    clear_red = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    half_black = Image.new("RGBA", (10, 10), (0, 0, 0, 128))
    assert decode_image(media.encode(clear_red, "PNG"), "x", max_pixels=LIMIT).getpixel((5, 5)) == (255, 255, 255)
    assert decode_image(media.encode(half_black, "PNG"), "x", max_pixels=LIMIT).getpixel((5, 5)) == (127, 127, 127)


def test_16bit_values_are_scaled_not_clipped():
    grey = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    assert decode_image(media.encode(grey, "PNG"), "x", max_pixels=LIMIT).getpixel((0, 0)) == (128, 128, 128)


def test_animated_gif_gives_its_first_frame():
    first, second = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    image = decode_image(media.animated_gif([first, second]), "x", max_pixels=LIMIT)
    red, _, blue = image.getpixel((4, 4))
    assert red > 200 and blue < 50


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"", "images[3] is empty"),
        (b"hello, this is text", "images[3] is not an image in a supported format"),
        (media.encode(media.photo(), "JPEG")[:300], "images[3] is not a readable image"),
        (media.encode(media.photo(), "JPEG")[:1500], "images[3] could not be decoded as JPEG (96x64)"),
        (media.encode(media.photo(), "PNG")[:100], "images[3]"),
        (media.encode(media.photo(), "PPM"), "not an image in a supported format"),
        (media.encode(media.photo(), "ICO"), "not an image in a supported format"),
    ],
)
def test_bad_bytes_are_refused_with_the_item_named(data, expected):
    with pytest.raises(BadInput) as caught:
        decode_image(data, "images[3]", max_pixels=LIMIT)
    assert expected in caught.value.message


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    bomb = media.png_header_only(100_000, 100_000)  # 10 gigapixels claimed, 57 bytes sent
    started = time.perf_counter()
    with pytest.raises(TooLarge) as caught:
        decode_image(bomb, "images[0]", max_pixels=LIMIT)
    assert time.perf_counter() - started < 1.0
    assert "VECTORIZER_MAX_IMAGE_PIXELS" in caught.value.message
    assert "100000x100000" in caught.value.message


def test_pixel_limit_is_the_configured_one():
    image = media.encode(media.photo(100, 100), "PNG")
    assert decode_image(image, "x", max_pixels=10_000).size == (100, 100)
    with pytest.raises(TooLarge):
        decode_image(image, "x", max_pixels=9_999)


def test_jpeg_draft_decodes_large_jpegs_at_a_reduced_scale_but_never_below_the_target():
    data = media.encode(media.photo(1600, 1200), "JPEG", quality=90)
    assert decode_image(data, "x", max_pixels=LIMIT).size == (1600, 1200)
    assert decode_image(data, "x", max_pixels=LIMIT, draft_size=224).size == (400, 300)
    assert decode_image(data, "x", max_pixels=LIMIT, draft_size=500).size == (800, 600)
    png = media.encode(media.photo(1600, 1200), "PNG")
    assert decode_image(png, "x", max_pixels=LIMIT, draft_size=224).size == (1600, 1200)
