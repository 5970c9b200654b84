"""OpenCLIP checkpoints: detection, refusals, and parity with open_clip itself (tokens, pixels, vectors)
on random-weight models that open_clip writes and embeds in its own environment (``isolated_envs``)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clip_training.freezing import freeze_first_layers, unfreeze
from tests import media
from tests.helpers import make_engine
from tests.isolated_envs import build_with_open_clip
from tests.reference import assert_parity, unit
from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models.loading import ModelSource, detect, load_towers
from vectorizer_module.models.openclip import OpenClipTextTower, OpenClipVisionTower
from vectorizer_module.server.app import create_app

LONG_TEXT = " ".join(["a red circle on a white background with two small trees near the house"] * 8)
TEXTS = [
    "a photo of a cat",
    "A Photo, of a CAT!",
    "two  dogs\tand a\nbird",
    "",
    "unseen wörds and emoji 🙂",
    "it's 3 o'clock",
    LONG_TEXT,
]
# sizes whose centre crop offsets round differently in torchvision (round half to even) and in a floor
SIZES = [(50, 37), (37, 50), (47, 32), (64, 64), (33, 100), (200, 90), (8, 8)]
TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
VARIANTS = {
    "quickgelu-shortest-bicubic": dict(
        model_cfg=dict(TINY, quick_gelu=True),
        weights="open_clip_model.safetensors",
        preprocess_cfg={"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    ),
    "gelu-squash-bilinear": dict(
        model_cfg=dict(TINY),
        weights="open_clip_pytorch_model.bin",
        preprocess_cfg={
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "interpolation": "bilinear",
            "resize_mode": "squash",
        },
    ),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each variant's model directory (written by open_clip) and open_clip's own results on it."""
    scratch = tmp_path_factory.mktemp("openclip")
    files = []
    for index, (width, height) in enumerate(SIZES):
        files.append(scratch / f"image-{index}.png")
        media.photo(width, height, seed=index).save(files[-1])
    built = {}
    for name, variant in VARIANTS.items():
        spec = dict(variant, target=str(scratch / name), seed=len(built), texts=TEXTS, images=[str(f) for f in files])
        root = build_with_open_clip(spec, scratch)
        built[name] = (root, dict(np.load(root / "reference.npz")))
    return built, [Image.open(f).convert("RGB") for f in files]


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, models):
    built, images = models
    root, reference = built[request.param]
    return root, reference, images, load_towers(detect(root))


def test_an_openclip_directory_is_detected_and_described(variant):
    root, _, _, towers = variant
    assert detect(root) == ModelSource("openclip", root, root, root, root, root, family="openclip")
    assert isinstance(towers.query, OpenClipTextTower) and isinstance(towers.items, OpenClipVisionTower)
    info = towers.info
    assert (info.family, info.layout, info.dimension, info.text_max_tokens, info.image_size) == (
        "openclip",
        "openclip",
        16,
        77,
        32,
    )
    for tower in (towers.query, towers.items):
        frozen = freeze_first_layers(tower, 1)
        assert any(".encoder.layers.0." in name for name in frozen)
        assert not any(".encoder.layers.1." in name for name in frozen)
        unfreeze(tower)


def test_tokens_are_open_clips(variant):
    _, reference, _, towers = variant
    inputs = towers.query.preprocess(TEXTS)
    theirs = reference["tokens"]
    assert theirs.shape == (len(TEXTS), 77)
    for row, (ids, mask) in enumerate(zip(inputs["input_ids"].numpy(), inputs["attention_mask"].numpy())):
        length = int(mask.sum())
        assert ids[:length].tolist() == theirs[row][:length].tolist(), TEXTS[row]
        assert not theirs[row][length:].any()  # open_clip pads with zeros after the end-of-text token
    assert inputs["attention_mask"][-1].sum() == 77  # the long text is truncated to the context


def test_pixels_are_open_clips_bit_for_bit(variant):
    _, reference, images, towers = variant
    ours = towers.items.preprocess(images)["pixel_values"]
    assert ours.dtype == torch.float32
    assert np.array_equal(ours.numpy(), reference["pixels"])


def test_vectors_match_open_clip(variant):
    _, reference, images, towers = variant
    assert_parity(towers.query.embed(TEXTS), reference["texts"])
    assert_parity(towers.items.embed(images), reference["images"])


def test_vectorize_round_trip_and_onnx(models, tmp_path):
    from tests.helpers import OnnxRun

    built, images = models
    root, reference = built["quickgelu-shortest-bicubic"]
    client = create_app(make_engine(root, cache_size=0)).test_client()
    body = {"texts": TEXTS[:3], "images": [media.b64(media.encode(i, "PNG")) for i in images[:3]]}
    response = client.post("/vectorize", data=json.dumps(body))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_parity(response.get_json()["textVectors"], unit(reference["texts"][:3]))
    assert_parity(response.get_json()["imageVectors"], unit(reference["images"][:3]))
    meta = client.get("/meta").get_json()
    assert meta["clip-vectorizer"]["model"]["family"] == "openclip"
    assert meta["model_cfg"] == json.loads((root / "open_clip_config.json").read_text())["model_cfg"]

    source = detect(root)
    onnx = OnnxRun(source, tmp_path)
    assert_parity(onnx.texts(TEXTS), reference["texts"], min_cosine=0.9999, max_abs=1e-4)
    assert_parity(onnx.images(images), reference["images"], min_cosine=0.9999, max_abs=1e-4)


def _copy_with_config(models, tmp_path, edit) -> Path:
    built, _ = models
    target = tmp_path / "edited"
    shutil.copytree(built["gelu-squash-bilinear"][0], target)
    config = json.loads((target / "open_clip_config.json").read_text())
    edit(config)
    (target / "open_clip_config.json").write_text(json.dumps(config))
    return target


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda c: c["model_cfg"]["vision_cfg"].update(timm_model_name="vit_base_patch16_224"), "timm_model_name"),
        (lambda c: c["model_cfg"]["vision_cfg"].update(layers=[3, 4, 6, 3]), "ResNet"),
        (lambda c: c["model_cfg"]["text_cfg"].update(hf_model_name="xlm-roberta-base"), "hf_model_name"),
        (lambda c: c["model_cfg"].update(custom_text=True), "custom text tower"),
        (lambda c: c["model_cfg"]["vision_cfg"].update(ls_init_value=1e-5), "ls_init_value"),
        (lambda c: c["preprocess_cfg"].update(resize_mode="longest"), "resize_mode='longest'"),
    ],
)
def test_architectures_it_cannot_convert_are_refused_by_name(models, tmp_path, edit, named):
    target = _copy_with_config(models, tmp_path, edit)
    with pytest.raises(ModelLayoutError, match=f"(?s)not supported.*{named}|{named}.*not supported"):
        detect(target)


def test_a_directory_without_weights_or_tokenizer_says_what_is_missing(models, tmp_path):
    target = _copy_with_config(models, tmp_path, lambda c: None)
    (target / "open_clip_pytorch_model.bin").unlink()
    (target / "bpe_simple_vocab_16e6.txt.gz").unlink()
    with pytest.raises(ModelLayoutError, match="(?s)lacks weights .* and a tokenizer .*openai/clip-vit-base-patch32"):
        detect(target)
