"""ColPali-engine's ModernVBERT bi-encoder as the reference image serves it (``COLPALI_ENGINE_MODEL_NAME``):
its folders, ``models/colpali_engine_model`` and ``models/colpali_engine_processor`` (hub caches) with the
``config.json`` and ``model_name`` its download step writes, and the encoders' configs in a Hugging Face
cache, are served here; the vectors are compared with the reference's own code path (colpali-engine 0.3.13
under transformers 4.57.3), run apart by ``tests/reference_colpali.py`` on a tiny random model of the real
architecture that it builds."""

import base64
import json
import shutil

import numpy as np
import pytest

from tests import media
from tests.helpers import make_engine
from tests.isolated_envs import build_with_colpali_engine
from tests.reference import assert_parity
from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models.loading import detect
from vectorizer_module.server.app import create_app

REPO = "ModernVBERT/bimodernvbert-tiny"
TEXTS = ["a photo of a cat", "hi", "the quick brown fox jumps over the lazy dog"]
SIZES = [(40, 30), (100, 20), (32, 32), (300, 200)]  # 2x2 tiles, 2x1, 2x2, 2x2, each with the global view


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the target folder: models/ and hf-cache/, the image files, the reference's vectors)."""
    target = tmp_path_factory.mktemp("colpali")
    paths = []
    for index, (width, height) in enumerate(SIZES):
        path = target / f"image{index}.png"
        path.write_bytes(media.encode(media.photo(width, height, seed=index), "PNG"))
        paths.append(str(path))
    return target, paths, build_with_colpali_engine(target, REPO, TEXTS, paths)


@pytest.fixture()
def engine(built, monkeypatch):
    target, _, _ = built
    monkeypatch.setenv("HF_HUB_CACHE", str(target / "hf-cache"))  # where the reference image has the encoders
    return make_engine(target / "models", cache_size=0)


def test_the_folders_are_detected_as_the_reference_writes_them(built):
    target, _, _ = built
    source = detect(target / "models")
    assert (source.layout, source.family) == ("reference-image", "modernvbert")
    assert source.text_weights == source.vision_weights and "colpali_engine_model" in str(source.text_weights)
    assert source.tokenizer.parts[-4] == "colpali_engine_processor"  # CACHE/models--ORG--NAME/snapshots/REV


def test_vectors_and_meta_are_the_references(built, engine):
    target, paths, reference = built
    client = create_app(engine).test_client()
    images = [base64.b64encode(open(path, "rb").read()).decode() for path in paths]
    response = client.post("/vectorize", data=json.dumps({"texts": TEXTS, "images": images}))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    # the reference pads each list to its longest on the left; ModernBERT's rotary positions make that harmless
    assert_parity(body["textVectors"], reference["texts"])
    assert_parity(body["imageVectors"], reference["images"])
    meta = client.get("/meta").get_json()
    written = json.loads((target / "models" / "colpali_engine_model" / "config.json").read_text())
    assert {k: meta[k] for k in written} == written  # what the reference's meta.py answers
    assert meta["clip-vectorizer"]["model"]["family"] == "modernvbert"
    assert meta["clip-vectorizer"]["model"]["normalized"] == {"text": True, "image": True}


def test_a_text_that_spells_a_special_token_is_text(engine):
    """The reference reads "<image>" in a text as an image slot and fails the request (no image came with
    it); here it is seven characters of text."""
    client = create_app(engine).test_client()
    response = client.post("/vectorize", data=json.dumps({"texts": ["<image> is only text here"]}))
    assert response.status_code == 200, response.get_data(as_text=True)
    vector = np.asarray(response.get_json()["textVectors"][0])
    plain, _ = engine.embed(["is only text here"], [])
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5 and float(vector @ plain[0]) < 0.9999


def test_an_input_gets_one_vector_whatever_else_its_batch_holds(engine):
    alone = {text: engine.embed([text], [])[0][0] for text in TEXTS}
    together, _ = engine.embed(TEXTS * 2, [])
    for text, row in zip(TEXTS * 2, together):
        assert np.array_equal(row, alone[text])


def test_missing_encoder_configs_are_named(built, tmp_path, monkeypatch):
    target, _, _ = built
    shutil.copytree(target / "models", tmp_path / "models", symlinks=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    from vectorizer_module.models.loading import load_towers

    with pytest.raises(ModelLayoutError, match="jhu-clsp/ettin-encoder-150m.*HF_HUB_CACHE"):
        load_towers(detect(tmp_path / "models"))


def test_a_folder_without_its_name_or_processor_is_refused(tmp_path):
    (tmp_path / "models" / "colpali_engine_model").mkdir(parents=True)
    with pytest.raises(ModelLayoutError, match="model_name"):
        detect(tmp_path / "models")
    (tmp_path / "models" / "model_name").write_text(REPO)
    with pytest.raises(ModelLayoutError, match="no 'ModernVBERT/bimodernvbert-tiny' in the hub cache"):
        detect(tmp_path / "models")


def test_a_long_text_is_cut_to_the_context(engine):
    longer, long = engine.embed(["many words " * 5000, "many words " * 4000], [])[0]
    assert np.array_equal(longer, long)  # both past the context: the same tokens after truncation
    assert engine.towers.info.text_max_tokens == 512  # the encoder's positions (the tiny test model's)


def test_an_encoder_of_another_architecture_is_named(built, tmp_path, monkeypatch):
    target, _, _ = built
    shutil.copytree(target / "hf-cache", tmp_path / "hf-cache", symlinks=False)
    vision = next((tmp_path / "hf-cache").glob("models--google--siglip2-base-patch16-512/snapshots/*/config.json"))
    vision.write_text(json.dumps(dict(json.loads(vision.read_text()), model_type="siglip2")))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    from vectorizer_module.models.loading import load_towers

    with pytest.raises(ModelLayoutError, match="model_type 'siglip2'.*SigLIP vision"):
        load_towers(detect(target / "models"))
