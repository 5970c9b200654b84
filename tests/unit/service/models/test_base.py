"""The tower interface on a tiny CLIP: one space, example inputs that trace, preprocessing."""

import pytest
import torch

from tests import media
from vectorizer_module.models.loading import detect, load_towers


@pytest.fixture()
def towers(tiny_model):
    return load_towers(detect(tiny_model))


def test_towers_share_one_space_and_describe_themselves(towers):
    assert towers.query.embedding_dim == towers.items.embedding_dim == towers.info.dimension == 16
    assert towers.query.max_length == 77 and towers.items.image_size == 32
    assert towers.info.layout == "huggingface"


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("which", ["query", "items"])
def test_each_tower_traces_on_its_example_inputs(towers, which):
    tower = getattr(towers, which)
    example = tower.example_inputs(batch_size=3)
    with torch.inference_mode():
        eager = tower(*example)
    traced = torch.jit.trace(tower, example, check_trace=False)
    assert eager.shape == (3, 16)
    assert torch.allclose(traced(*example), eager, atol=1e-6)


def test_preprocess_pads_to_the_longest_text_and_truncates(towers):
    batch = towers.query.preprocess(["a", "a much longer text than the first one"])
    assert batch["input_ids"].shape[1] < 77
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()
    assert towers.query.preprocess(["x " * 400])["input_ids"].shape[1] == 77


def test_image_preprocessing_resizes_and_crops_to_the_model_size(towers):
    pixels = towers.items.preprocess([media.photo(640, 480), media.photo(20, 90)])["pixel_values"]
    assert pixels.shape == (2, 3, 32, 32)


def test_fast_image_preprocessing_gives_the_processors_exact_pixels(towers):
    assert towers.items.recipe is not None
    for size in [(640, 480), (33, 32), (32, 33), (1000, 37), (37, 1000), (32, 32), (31, 31), (17, 400)]:
        image = media.photo(*size, seed=sum(size))
        ours = towers.items.preprocess([image])["pixel_values"]
        theirs = towers.items.processor(images=[image], return_tensors="pt")["pixel_values"]
        assert torch.equal(ours, theirs), size
