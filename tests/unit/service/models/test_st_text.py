"""Multilingual CLIP: a sentence-transformers text model (transformer → pooling → dense) trained into
CLIP's space, served as the query tower beside CLIP's vision tower, as Weaviate's multi2vec-clip image
pairs ``clip-ViT-B-32`` with ``clip-ViT-B-32-multilingual-v1``. Parity is against sentence-transformers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clip_training.freezing import freeze_first_layers, trainable_parameter_names
from clip_training.random_models.clip import save_random_model
from clip_training.random_models.multilingual import save_random_text_model
from tests.reference import assert_parity
from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models.loading import detect, load_towers
from vectorizer_module.models.st_text import SentenceTransformerTextTower

TEXTS = [
    "a photo of a cat",
    "ein Foto von einem Hund",
    "une voiture rouge",
    "фото собаки",
    "一只猫",
    "",
    " ".join(["long"] * 300),
]


def _st_vectors(directory, texts):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(directory), device="cpu")
    # dicts keep sentence-transformers from reading a text as an image path or URL
    return model.encode([{"text": t} for t in texts], convert_to_numpy=True)


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("ml") / "m", "tiny", "reference-image-multilingual", seed=2)


def test_reference_layout_with_a_multilingual_text_model_is_detected(multilingual):
    source = detect(multilingual)
    assert (source.layout, source.family) == ("reference-image", "clip-multilingual")
    assert source.text_weights == multilingual.resolve() / "models" / "text"
    assert source.vision_weights.parent == multilingual.resolve() / "models" / "clip"


@pytest.mark.parametrize("form", ["hub", "st6"])
def test_text_vectors_match_sentence_transformers(tmp_path, form):
    directory = save_random_text_model(tmp_path / form, 16, form=form, seed=7)
    tower = SentenceTransformerTextTower.from_dir(directory)
    assert tower.embedding_dim == 16 and tower.max_length == 128
    assert_parity(tower.embed(TEXTS).numpy(), _st_vectors(directory, TEXTS))


def test_served_model_pairs_the_multilingual_text_tower_with_clips_vision_tower(multilingual):
    towers = load_towers(detect(multilingual))
    assert isinstance(towers.query, SentenceTransformerTextTower)
    assert towers.info.family == "clip-multilingual" and towers.info.dimension == 16
    assert towers.query.embedding_dim == towers.items.embedding_dim
    assert_parity(towers.query.embed(TEXTS).numpy(), _st_vectors(multilingual / "models" / "text", TEXTS))
    # languages are told apart, not collapsed to unknown tokens
    vectors = towers.query.embed(TEXTS[:5]).numpy()
    assert len({v.tobytes() for v in vectors}) == 5


def test_long_texts_are_truncated_to_the_models_sequence_length(multilingual):
    towers = load_towers(detect(multilingual))
    batch = towers.query.preprocess([" ".join(["word"] * 300)])
    assert batch["input_ids"].shape[1] == 128


def test_padding_in_a_batch_does_not_change_a_text_beyond_float_noise(multilingual):
    tower = load_towers(detect(multilingual)).query
    alone = tower.embed(["a cat"])
    together = tower.embed(["a cat", "a much longer text that makes the batch pad the first one"])[:1]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-5)


def test_freezing_the_first_layers_of_the_text_encoder(multilingual):
    tower = load_towers(detect(multilingual)).query
    frozen = freeze_first_layers(tower, 1)
    assert frozen and all(n.startswith(("encoder.embeddings", "encoder.transformer.layer.0")) for n in frozen)
    trainable = trainable_parameter_names(tower)
    assert any(n.startswith("encoder.transformer.layer.1") for n in trainable)
    assert any(n.startswith("dense.") for n in trainable)


def test_a_text_model_with_modules_the_service_cannot_run_is_refused_by_name(multilingual, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(multilingual, broken)
    modules_file = broken / "models" / "text" / "modules.json"
    modules = json.loads(modules_file.read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_LSTM", "type": "sentence_transformers.models.LSTM"})
    modules_file.write_text(json.dumps(modules))
    with pytest.raises(ModelLayoutError, match="LSTM"):
        detect(broken)


def test_the_multilingual_text_tower_exports_to_onnx_with_the_same_vectors(multilingual, tmp_path):
    from tests.helpers import OnnxRun

    source = detect(multilingual)
    expected = load_towers(source).query.embed(TEXTS).numpy()
    got = OnnxRun(source, tmp_path).texts(TEXTS)
    cosine = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosine.min() >= 0.9999
