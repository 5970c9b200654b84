"""The reference image's SigLIP folders (its download.py for SIGLIP_MODEL_NAME, tag 1.5.0): models/siglip
from ``SiglipModel.save_pretrained``, the processor in a hub cache inside it, and models/model_name. Served
with the vectors the reference's clip.py computes, which are compared here by running its code path on a
tiny random SigLIP saved in that exact layout (transformers reads the processor from the cache, offline)."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, SiglipModel

from clip_training.random_models.siglip import save_random_model
from tests import media
from tests.helpers import make_engine
from tests.reference import assert_parity
from tests.siglip_reference import LONG_TEXT, TEXTS
from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models.loading import detect, load_towers
from vectorizer_module.models.reference import meta, normalization

REPO_ID = "google/siglip-tiny-random"
REVISION = "0123456789abcdef0123456789abcdef01234567"
# what AutoProcessor.from_pretrained fetches into the cache: the model config too (to pick the processor)
PROCESSOR_FILES = (
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer_config.json",
    "spiece.model",
)


def write_reference_layout(hub_dir, models):
    """models/siglip, models/siglip/models--ORG--NAME/{refs/main, snapshots/REV/...}, models/model_name,
    as the reference's download.py leaves them."""
    siglip = models / "siglip"
    siglip.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(hub_dir / name, siglip / name)
    cache = siglip / f"models--{REPO_ID.replace('/', '--')}"
    snapshot = cache / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for name in PROCESSOR_FILES + ("special_tokens_map.json",):
        if (hub_dir / name).is_file():
            shutil.copy(hub_dir / name, snapshot / name)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(REVISION)
    (models / "model_name").write_text(REPO_ID)
    (models / "trust_remote_code").write_text("False")
    return models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    hub_dir = save_random_model(tmp_path_factory.mktemp("hub") / "tiny-siglip", seed=3)
    return write_reference_layout(hub_dir, tmp_path_factory.mktemp("image") / "models")


@pytest.fixture(scope="module")
def reference(models):
    """The reference's ClipInferenceSigCLIP: SiglipModel from models/siglip, AutoProcessor by name from
    the cache in models/siglip (local_files_only: what its container reads with no hub in reach)."""
    model = SiglipModel.from_pretrained(str(models / "siglip")).eval()
    processor = AutoProcessor.from_pretrained(
        REPO_ID, cache_dir=str(models / "siglip"), use_fast=True, local_files_only=True
    )
    return model, processor


def _features(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.inference_mode()
def reference_texts(reference, texts):
    """Its text path: all the request's texts in one processor call, padded to the longest."""
    model, processor = reference
    inputs = processor(text=texts, return_tensors="pt", padding=True, truncation=True)
    return _features(model.get_text_features(**inputs)).numpy()


@torch.inference_mode()
def reference_image(reference, image):
    """Its image path: one image per processor call."""
    model, processor = reference
    inputs = processor(images=[image], return_tensors="pt")
    return _features(model.get_image_features(**inputs)).numpy()[0]


def test_the_reference_siglip_folders_are_detected_with_the_processor_from_the_hub_cache(models):
    source = detect(models)
    snapshot = models / "siglip" / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / REVISION
    assert (source.layout, source.family) == ("reference-image", "siglip-reference")
    assert source.text_weights == source.vision_weights == models / "siglip"
    assert source.tokenizer == source.image_processor == snapshot
    assert detect(models.parent) == source  # the folder that holds models/, as for the other layouts


def test_each_text_gets_the_reference_vector_of_a_request_holding_that_text(models, reference):
    towers = load_towers(detect(models))
    for text in TEXTS:
        ours = towers.query.embed([text]).numpy()
        assert_parity(ours, reference_texts(reference, [text]))
    # texts of one token length: the reference pads none of them, and its vectors equal ours in one batch
    same = ["a red circle", "a blue square"]
    lengths = {len(reference[1](text=[t])["input_ids"][0]) for t in same}
    assert len(lengths) == 1
    assert_parity(towers.query.embed(same).numpy(), reference_texts(reference, same))


def test_images_get_the_reference_vectors(models, reference):
    towers = load_towers(detect(models))
    images = [media.photo(w, h, seed) for seed, (w, h) in enumerate([(32, 32), (96, 64), (17, 140), (5, 5)])]
    assert_parity(towers.items.embed(images).numpy(), np.stack([reference_image(reference, i) for i in images]))


def test_the_engine_batches_texts_of_different_lengths_without_changing_their_vectors(models, reference):
    engine = make_engine(models, cache_size=0, max_wait_ms=50.0)
    crowded, _ = engine.embed(["x", LONG_TEXT, "a photo of a cat", "two dogs", "a photo of a cat"], [])
    for text, vector in zip(["x", LONG_TEXT, "a photo of a cat", "two dogs"], crowded):
        alone, _ = engine.embed([text], [])
        assert np.array_equal(alone[0], vector), text  # bit for bit, whatever the batch
    assert np.array_equal(crowded[2], crowded[4])
    # raw, as the reference's SigLIP path returns it (VECTORIZER_NORMALIZE=auto follows the reference)
    assert_parity(crowded[2][None], reference_texts(reference, ["a photo of a cat"]))


def test_meta_and_normalisation_are_the_references(models):
    source = detect(models)
    assert meta(source) == json.loads((models / "siglip" / "config.json").read_text())
    assert normalization(source) == {"text": False, "image": False}  # its SigLIP path returns raw features


def test_incomplete_reference_siglip_folders_say_what_is_missing(models, tmp_path):
    broken = tmp_path / "no-name" / "models"
    shutil.copytree(models, broken)
    (broken / "model_name").unlink()
    with pytest.raises(ModelLayoutError, match="model_name"):
        detect(broken)
    broken = tmp_path / "no-cache" / "models"
    shutil.copytree(models, broken)
    (broken / "model_name").write_text("google/another-model")
    with pytest.raises(ModelLayoutError, match="no processor for 'google/another-model'"):
        detect(broken)


def test_the_onnx_backend_refuses_this_family_by_name(models, tmp_path):
    from tests.helpers import OnnxRun

    with pytest.raises(RuntimeError, match="siglip-reference family"):
        OnnxRun(detect(models), tmp_path)
