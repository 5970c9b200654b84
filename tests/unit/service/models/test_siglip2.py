"""SigLIP 2 NaFlex towers: detection, parity with transformers' own Siglip2Model + Siglip2Processor on
images of many aspect ratios, batching of mixed shapes, and a /vectorize round-trip, on a tiny random
SigLIP 2 (``random.siglip.save_random_model(naflex=True)``)."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, Siglip2Model

from clip_training.freezing import freeze_first_layers, unfreeze
from clip_training.random_models.siglip import save_random_model
from tests import media
from tests.helpers import make_engine
from tests.reference import assert_parity, cosine
from tests.siglip_reference import LONG_TEXT, TEXTS, reference_images
from vectorizer_module.models.loading import ModelSource, detect, load_towers
from vectorizer_module.models.siglip2 import Siglip2TextTower, Siglip2VisionTower
from vectorizer_module.server.app import create_app

# square, wide, tall, tiny, and one too large for the patch budget at its own size
SIZES = [(32, 32), (96, 24), (17, 140), (5, 5), (900, 41), (640, 480)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("siglip2") / "tiny-siglip2-naflex", seed=1, naflex=True)


@pytest.fixture(scope="module")
def towers(model_dir):
    return load_towers(detect(model_dir))


@pytest.fixture(scope="module")
def reference(model_dir):
    """transformers' own pipeline, as SigLIP 2's model card runs it."""
    return Siglip2Model.from_pretrained(str(model_dir)).eval(), AutoProcessor.from_pretrained(str(model_dir))


@torch.inference_mode()
def reference_texts(reference, texts):
    model, processor = reference
    inputs = processor(text=texts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
    return model.get_text_features(**inputs).pooler_output.numpy()


def pictures():
    return [media.photo(w, h, seed=i) for i, (w, h) in enumerate(SIZES)]


def test_a_siglip2_naflex_directory_is_detected_and_described(model_dir, towers):
    assert detect(model_dir) == ModelSource(
        "huggingface", model_dir, model_dir, model_dir, model_dir, model_dir, family="siglip2"
    )
    assert isinstance(towers.query, Siglip2TextTower) and isinstance(towers.items, Siglip2VisionTower)
    info = towers.info
    # image_size: the square that uses the whole budget of 256 patches of 16 pixels
    assert (info.family, info.dimension, info.text_max_tokens, info.image_size) == ("siglip2", 32, 64, 256)
    for tower in (towers.query, towers.items):
        assert tower(*tower.example_inputs(3)).shape == (3, 32)
        frozen = freeze_first_layers(tower, 1)
        assert any(name.startswith("model.encoder.layers.0.") for name in frozen)
        assert not any(name.startswith("model.encoder.layers.1.") for name in frozen)
        unfreeze(tower)


def test_texts_match_transformers_siglip2_pipeline(towers, reference):
    inputs = towers.query.preprocess(TEXTS)
    theirs = reference[1](text=TEXTS, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
    assert torch.equal(inputs["input_ids"], theirs["input_ids"])
    assert torch.equal(inputs["attention_mask"], theirs["attention_mask"])
    assert inputs["attention_mask"][-1].all()  # the long text fills all 64 positions (truncated)
    assert_parity(towers.query.embed(TEXTS), reference_texts(reference, TEXTS))


def test_images_of_any_aspect_ratio_match_transformers_siglip2_pipeline(towers, reference):
    images = pictures()
    ours = towers.items.preprocess(images)
    theirs = reference[1](images=images, return_tensors="pt")
    for name in ("pixel_values", "pixel_attention_mask", "spatial_shapes"):
        assert torch.equal(ours[name], theirs[name]), name
    shapes = ours["spatial_shapes"].tolist()
    assert len({tuple(s) for s in shapes}) > 3 and all(h * w <= 256 for h, w in shapes)  # aspect ratios kept
    assert_parity(towers.items.embed(images), reference_images(reference, images))


def test_mixed_shapes_batch_together_and_each_image_keeps_its_vector(towers):
    images = pictures()
    tower = towers.items
    with torch.inference_mode():
        alone = [tower(*tower.to_model_inputs(tower.preprocess([image])))[0].numpy() for image in images]
        batch = tower(*tower.to_model_inputs(tower.collate([tower.preprocess([i]) for i in images]))).numpy()
    for one, row in zip(alone, batch):
        assert cosine(one, row) > 0.999999 and np.abs(one - row).max() < 1e-5
    assert cosine(alone[1], alone[2]) < 0.9999  # different images stay apart


def test_vectorize_round_trip(model_dir, reference):
    engine = make_engine(model_dir, cache_size=0)
    client = create_app(engine).test_client()
    images = [media.photo(96, 24, seed=7), media.photo(20, 120, seed=8)]
    body = {"texts": ["a photo of a cat", LONG_TEXT], "images": [media.b64(media.encode(i, "PNG")) for i in images]}
    response = client.post("/vectorize", data=json.dumps(body))
    assert response.status_code == 200, response.get_data(as_text=True)
    vectors = response.get_json()
    assert_parity(vectors["textVectors"], reference_texts(reference, body["texts"]))  # raw, as the reference image
    assert_parity(vectors["imageVectors"], reference_images(reference, images))
    meta = client.get("/meta").get_json()
    assert meta["clip-vectorizer"]["model"]["family"] == "siglip2"
    assert meta["model_type"] == "siglip2"  # the saved config.json, as the reference image answers


def test_the_onnx_backend_refuses_siglip2_naflex_by_name(model_dir, tmp_path):
    from tests.helpers import OnnxRun

    with pytest.raises(RuntimeError, match="cannot run the image tower of the siglip2 family.*torch backend"):
        OnnxRun(detect(model_dir), tmp_path)


def test_make_random_model_writes_a_siglip2_the_service_detects(tmp_path, capsys):
    from clip_training.cli import main

    assert main(["make-random-model", str(tmp_path / "sig2"), "--family", "siglip2", "--seed", "3"]) == 0
    assert "SigLIP 2 NaFlex" in capsys.readouterr().out
    towers = load_towers(detect(tmp_path / "sig2"))
    assert towers.info.family == "siglip2"
    assert towers.items.embed([media.photo(70, 30)]).shape == (1, towers.info.dimension)
