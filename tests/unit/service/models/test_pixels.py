"""Resizing is bounded by what the tower needs, whatever the image's shape (issue 18: strip images)."""

import numpy as np
import pytest
from PIL import Image

from vectorizer_module.models.hf_clip import ClipImageRecipe
from vectorizer_module.models.openclip import OpenClipImageRecipe
from vectorizer_module.models.pixels import MAX_RESAMPLE_FACTOR, resize_and_crop, shortest_edge_size
from vectorizer_module.models.siglip import SiglipImageRecipe

MEAN, STD = np.zeros(3, np.float32), np.ones(3, np.float32)
RECIPES = {
    "clip": ClipImageRecipe(224, 224, 224, Image.BICUBIC, 1 / 255, MEAN, STD),
    "siglip": SiglipImageRecipe(224, 224, Image.BICUBIC, 1 / 255, MEAN, STD),
    "openclip": OpenClipImageRecipe(224, False, Image.BICUBIC, MEAN, STD),
    "openclip-squash": OpenClipImageRecipe(224, True, Image.BILINEAR, MEAN, STD),
}


@pytest.fixture
def resized_pixels(monkeypatch) -> list[int]:
    """The pixel count of every image PIL's resize makes while the test runs."""
    made: list[int] = []
    resize = Image.Image.resize

    def counting(self, *args, **kwargs):
        out = resize(self, *args, **kwargs)
        made.append(out.width * out.height)
        return out

    monkeypatch.setattr(Image.Image, "resize", counting)
    return made


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("shape", [(1, 100_000), (100_000, 1), (3, 30_000), (40_000, 7)])
def test_a_strip_image_costs_no_more_than_a_bounded_multiple_of_the_towers_input(recipe, shape, resized_pixels):
    strip = Image.new("RGB", shape, (200, 30, 30))
    pixels = RECIPES[recipe](strip)
    assert pixels.shape == (3, 224, 224)
    assert np.allclose(pixels[0], 200 / 255, atol=2 / 255)  # a plain red strip stays red
    assert resized_pixels and max(resized_pixels) <= MAX_RESAMPLE_FACTOR * 224 * 224


@pytest.mark.parametrize("shape", [(640, 480), (480, 640), (300, 300), (7000, 224)])
def test_photo_shapes_are_resized_whole_as_the_reference_processor_does(shape):
    image = Image.fromarray(np.random.default_rng(sum(shape)).integers(0, 256, (*shape[::-1], 3), dtype=np.uint8))
    size = shortest_edge_size(*shape, 224)
    top, left = (size[1] - 224) // 2, (size[0] - 224) // 2
    whole = np.asarray(image.resize(size, resample=Image.BICUBIC))[top : top + 224, left : left + 224]
    assert np.array_equal(resize_and_crop(image, size, left, top, (224, 224), Image.BICUBIC), whole)


def test_beyond_the_bound_only_the_cropped_region_is_resampled_and_stays_close(resized_pixels):
    image = Image.fromarray(np.random.default_rng(5).integers(0, 256, (2000, 50, 3), dtype=np.uint8))
    size = shortest_edge_size(50, 2000, 224)  # 224 x 8960: 40 crops, past the bound
    top = (size[1] - 224) // 2
    whole = np.asarray(image.resize(size, resample=Image.BICUBIC))[top : top + 224]
    resized_pixels.clear()
    part = resize_and_crop(image, size, 0, top, (224, 224), Image.BICUBIC)
    assert resized_pixels == [224 * 224]
    assert np.abs(part.astype(int) - whole.astype(int)).mean() < 3
