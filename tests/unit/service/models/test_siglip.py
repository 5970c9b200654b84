"""SigLIP towers: detection, parity with transformers' own SiglipModel + processor, batch independence,
and a /vectorize round-trip, on a tiny random SigLIP (``models/random/siglip.py``)."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, SiglipModel

from clip_training.freezing import freeze_first_layers, unfreeze
from clip_training.random_models.siglip import save_random_model
from tests import media
from tests.helpers import make_engine
from tests.reference import assert_parity
from tests.siglip_reference import LONG_TEXT, TEXTS, reference_images
from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models.loading import ModelSource, detect, load_towers
from vectorizer_module.models.siglip import SiglipTextTower, SiglipVisionTower
from vectorizer_module.server.app import create_app

SIZES = [(32, 32), (96, 64), (17, 140), (300, 41), (5, 5)]


@pytest.fixture(scope="module")
def siglip_model(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("siglip") / "tiny-siglip", seed=0)


@pytest.fixture(scope="module")
def towers(siglip_model):
    return load_towers(detect(siglip_model))


@pytest.fixture(scope="module")
def reference(siglip_model):
    """transformers' own pipeline, as SigLIP's model card runs it."""
    return SiglipModel.from_pretrained(str(siglip_model)).eval(), AutoProcessor.from_pretrained(str(siglip_model))


@torch.inference_mode()
def reference_texts(reference, texts):
    model, processor = reference
    inputs = processor(text=texts, padding="max_length", truncation=True, return_tensors="pt")
    assert set(inputs) == {"input_ids"}  # the model was trained without an attention mask
    return model.get_text_features(**inputs).pooler_output.numpy()


def test_a_siglip_directory_is_detected(siglip_model):
    source = detect(siglip_model)
    assert source == ModelSource(
        "huggingface", siglip_model, siglip_model, siglip_model, siglip_model, siglip_model, family="siglip"
    )
    assert {p.name for p in siglip_model.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "spiece.model",
        "tokenizer_config.json",
        "preprocessor_config.json",
    }


def test_incomplete_siglip_directories_name_what_is_missing(siglip_model, tmp_path):
    target = tmp_path / "partial"
    shutil.copytree(siglip_model, target)
    (target / "spiece.model").unlink()
    (target / "preprocessor_config.json").unlink()
    with pytest.raises(ModelLayoutError, match="SigLIP directory .* lacks tokenizer files .* and an image processor"):
        detect(target)
    (target / "config.json").write_text(json.dumps({"model_type": "siglip2"}))
    with pytest.raises(ModelLayoutError, match="SigLIP 2 directory .* lacks tokenizer files .* and an image processor"):
        detect(target)
    with pytest.raises(ModelLayoutError, match="(?s)does not exist.*a Hugging Face SigLIP directory"):
        detect(tmp_path / "absent")


def test_towers_describe_the_model(towers):
    assert isinstance(towers.query, SiglipTextTower) and isinstance(towers.items, SiglipVisionTower)
    info = towers.info
    assert (info.family, info.dimension, info.text_max_tokens, info.image_size) == ("siglip", 32, 64, 32)
    assert towers.query.input_names == ("input_ids",)
    for tower in (towers.query, towers.items):
        assert tower(*tower.example_inputs(3)).shape == (3, 32)
        assert len(tower.layer_prefixes()) == 2
        frozen = freeze_first_layers(tower, 1)
        assert any(name.startswith("model.embeddings") for name in frozen)
        assert any(name.startswith("model.encoder.layers.0.") for name in frozen)
        assert not any(name.startswith("model.encoder.layers.1.") for name in frozen)
        unfreeze(tower)


def test_texts_match_transformers_siglip_pipeline(towers, reference):
    tokenizer = towers.query.tokenizer
    assert len(tokenizer(LONG_TEXT)["input_ids"]) > 64  # truncated by both
    inputs = towers.query.preprocess(TEXTS)
    assert inputs["input_ids"].shape == (len(TEXTS), 64)
    theirs = reference[1](text=TEXTS, padding="max_length", truncation=True, return_tensors="pt")["input_ids"]
    assert torch.equal(inputs["input_ids"], theirs)
    assert_parity(towers.query.embed(TEXTS), reference_texts(reference, TEXTS))


def test_images_match_transformers_siglip_pipeline(towers, reference):
    images = [media.photo(w, h, seed=i) for i, (w, h) in enumerate(SIZES)]
    ours = towers.items.preprocess(images)["pixel_values"]
    theirs = reference[1](images=images, return_tensors="pt")["pixel_values"]
    assert ours.dtype == theirs.dtype == torch.float32 and torch.equal(ours, theirs)  # same pixels, bit for bit
    assert_parity(towers.items.embed(images), reference_images(reference, images))


def test_a_text_gets_the_same_vector_in_any_batch(towers):
    tower = towers.query
    query = "a photo of a cat"
    with torch.inference_mode():

        def run(texts):
            batch = tower.collate([tower.preprocess([text]) for text in texts])
            assert batch["input_ids"].shape == (len(texts), 64)
            return tower(*tower.to_model_inputs(batch)).numpy()

        alone = run([query])[0]
        assert np.array_equal(run(["x", query, LONG_TEXT])[1], alone)
        assert np.array_equal(run([LONG_TEXT, "two", query, "a much longer caption of many words"])[2], alone)
    # token counts (for /v1/embeddings usage) are the real tokens, not the padding
    assert tower.collate([tower.preprocess([query])])["attention_mask"].sum() < 64


@pytest.fixture(scope="module")
def engine(siglip_model):
    return make_engine(siglip_model, cache_size=0)  # no cache: every vector is computed


def test_the_engine_gives_a_text_the_same_vector_in_any_request(engine):
    alone, _ = engine.embed(["a photo of a cat"], [])
    crowded, _ = engine.embed(["x", LONG_TEXT, "a photo of a cat", "two dogs"], [])
    assert np.array_equal(crowded[2], alone[0])


def test_vectorize_round_trip(engine, reference):
    client = create_app(engine).test_client()
    images = [media.photo(96, 64, seed=7), media.photo(40, 120, seed=8)]
    body = {"texts": ["a photo of a cat", LONG_TEXT], "images": [media.b64(media.encode(i, "PNG")) for i in images]}
    response = client.post("/vectorize", data=json.dumps(body))
    assert response.status_code == 200, response.get_data(as_text=True)
    vectors = response.get_json()
    assert_parity(vectors["textVectors"], reference_texts(reference, body["texts"]))  # raw, as the reference image
    assert_parity(vectors["imageVectors"], reference_images(reference, images))
    meta = client.get("/meta").get_json()
    ours = meta["clip-vectorizer"]["model"]
    assert (ours["family"], ours["dimension"]) == ("siglip", 32)
    assert ours["normalized"] == {"text": False, "image": False}  # as the reference image's SigLIP path


def test_the_onnx_backend_runs_siglip_with_the_same_vectors(siglip_model, towers, tmp_path):
    from tests.helpers import OnnxRun

    source = detect(siglip_model)
    pictures = [media.photo(w, h, seed=i) for i, (w, h) in enumerate(SIZES)]
    expected_texts, expected_images = towers.query.embed(TEXTS).numpy(), towers.items.embed(pictures).numpy()
    onnx = OnnxRun(source, tmp_path)
    assert onnx.backend.inputs["text"] == ["input_ids"]  # SigLIP's text tower takes no attention mask
    assert_parity(onnx.texts(TEXTS), expected_texts, min_cosine=0.9999, max_abs=1e-4)
    assert_parity(onnx.images(pictures), expected_images, min_cosine=0.9999, max_abs=1e-4)


def test_make_random_model_writes_a_siglip_the_service_detects(tmp_path, capsys):
    from clip_training.cli import main

    assert main(["make-random-model", str(tmp_path / "sig"), "--family", "siglip", "--seed", "3"]) == 0
    assert "SigLIP" in capsys.readouterr().out
    source = detect(tmp_path / "sig")
    assert source.family == "siglip"
    towers = load_towers(source)
    assert towers.query.embed(["a cat"]).shape == (1, towers.info.dimension)


def test_a_fixed_resolution_siglip2_with_its_gemma_tokenizer_gets_the_attention_mask(siglip_model, tmp_path):
    """google/siglip2-base-patch16-224 and the like: SiglipModel weights with a Gemma tokenizer that makes an
    attention mask; SiglipProcessor passes it to the model, so the tower does too."""
    from clip_training.random_models.siglip import gemma_style_tokenizer

    target = tmp_path / "siglip2-fixed"
    shutil.copytree(siglip_model, target)
    (target / "spiece.model").unlink()
    (target / "tokenizer_config.json").unlink()
    vocab_size = json.loads((target / "config.json").read_text())["text_config"]["vocab_size"]
    tokenizer = gemma_style_tokenizer(vocab_size=vocab_size)  # a BPE learns at most that many ids
    tokenizer.save_pretrained(str(target))
    towers = load_towers(detect(target))
    assert towers.info.family == "siglip" and towers.query.input_names == ("input_ids", "attention_mask")
    model = SiglipModel.from_pretrained(str(target)).eval()
    inputs = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
    assert int(inputs["attention_mask"][0].sum()) < 64  # padding that the mask hides
    with torch.inference_mode():
        expected = model.get_text_features(**inputs).pooler_output.numpy()
        without_mask = model.get_text_features(input_ids=inputs["input_ids"]).pooler_output.numpy()
    assert not np.allclose(expected, without_mask, atol=1e-4)  # the mask matters
    assert torch.equal(towers.query.preprocess(TEXTS)["input_ids"], inputs["input_ids"])
    assert_parity(towers.query.embed(TEXTS), expected)
