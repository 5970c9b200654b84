"""The reference image's OpenCLIP folder (its download.py for OPEN_CLIP_MODEL_NAME + OPEN_CLIP_PRETRAINED, tag
1.5.0): ``models/openclip/config.json`` naming open_clip's registry pair and its architecture, the weights in
the hub cache open_clip downloaded them into, no tokenizer. Served with the vectors the reference's clip.py
computes: its code path runs apart, under its own open_clip 2.29.0 and huggingface_hub 0.36.0
(``tests/reference_openclip.py``), on tiny random models registered under real registry names, so that the
registry's real entries (hub repository, preprocessing, QuickGELU) are what both sides read."""

import base64
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import media
from tests.helpers import make_engine
from tests.isolated_envs import REFERENCE_ENV, run_apart
from tests.reference import assert_parity, unit
from tests.server_process import ServerProcess
from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models import openclip
from vectorizer_module.models.loading import detect
from vectorizer_module.models.reference import meta, normalization

BPE = REFERENCE_ENV / "open_clip" / openclip.BPE_NAME
TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
# (registry name, tag): the weights file its hub repository is given, and the tiny architecture's QuickGELU
VARIANTS = {
    ("ViT-B-32", "laion2b_s34b_b79k"): ("open_clip_model.safetensors", False),  # the defaults
    ("ViT-B-32-quickgelu", "openai"): ("open_clip_pytorch_model.bin", True),  # QuickGELU in its config
    ("ViT-L-14", "laion2b_s32b_b82k"): ("open_clip_model.safetensors", False),  # mean and std 0.5
    # resized without a crop; the tag was trained with QuickGELU but the config lacks it: open_clip warns
    # and runs GELU, so the reference's vectors are GELU's
    ("ViT-H-14", "dfn5b"): ("open_clip_pytorch_model.bin", False),
}
TEXTS = [
    "a photo of a cat",
    "A Photo, of a CAT!",
    "two  dogs\tand a\nbird",
    "",
    "it’s a “quoted” word",  # ftfy straightens the quotes
    "Tom &amp; Jerry &lt;3",  # HTML entities unescaped
    "ｆｕｌｌｗｉｄｔｈ letters and cafÃ©",  # ftfy narrows them and mends the mojibake
    " ".join(["a red circle on a white background with two small trees near the house"] * 8),
]
SIZES = [(50, 37), (37, 50), (64, 64), (33, 100), (200, 90), (8, 8)]


def _id(pair):
    return "/".join(pair)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each variant's models/ folder as the reference's download.py leaves it, its vectors from the
    reference's clip.py, the image files, and open_clip 2.29.0's registry."""
    scratch = tmp_path_factory.mktemp("reference-openclip")
    images = []
    for index, (width, height) in enumerate(SIZES):
        image = media.photo(width, height, seed=index)
        if index == 1:
            image = image.convert("RGBA")  # the reference opens images as they come; its transform converts
        images.append(scratch / f"image-{index}.png")
        image.save(images[-1])
    variants = [
        {
            "models": str(scratch / _id(pair).replace("/", "-") / "models"),
            "model_name": pair[0],
            "pretrained": pair[1],
            "model_cfg": dict(TINY, quick_gelu=True) if quick_gelu else TINY,
            "weights": weights,
            "seed": index,
        }
        for index, (pair, (weights, quick_gelu)) in enumerate(VARIANTS.items())
    ]
    spec = {"variants": variants, "texts": TEXTS, "images": [str(p) for p in images]}
    spec["registry"] = str(scratch / "registry.json")
    run_apart("reference_openclip.py", spec, scratch, reference=True)
    models = {pair: Path(v["models"]) for pair, v in zip(VARIANTS, variants)}
    return models, images, json.loads(Path(spec["registry"]).read_text())


@pytest.fixture(params=list(VARIANTS), ids=_id)
def variant(request, built):
    models, images, _ = built
    root = models[request.param]
    return root, dict(np.load(root / "reference.npz")), images


def test_the_folder_is_detected_with_its_weights_in_the_hub_cache(built):
    models = built[0][("ViT-B-32", "laion2b_s34b_b79k")]
    source = detect(models, clip_tokenizer=BPE)
    assert (source.layout, source.family, source.root) == ("reference-image", "openclip", models)
    assert source.text_weights == source.vision_weights == models / "openclip"
    assert source.tokenizer == BPE
    weights = openclip.weights_file(models / "openclip")
    assert weights.parent.parent.parent.name == "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert weights.is_symlink() and weights.resolve().parent.name == "blobs"  # as hf_hub_download leaves it
    assert detect(models.parent, clip_tokenizer=BPE) == source


def test_texts_and_images_get_the_references_vectors(variant):
    root, reference, images = variant
    engine = make_engine(root, clip_tokenizer=str(BPE), cache_size=0)
    texts, _ = engine.embed(TEXTS, [])
    _, pictures = engine.embed([], [path.read_bytes() for path in images])
    assert_parity(texts, reference["texts"])  # normalised, as the reference's OpenCLIP path returns them
    assert_parity(pictures, reference["images"])


def test_the_preprocessing_table_is_open_clips_registry(built):
    """Every registry pair of an architecture served here gets the registry's preprocessing."""
    _, _, registry = built
    default = {"mean": list(openclip.OPENAI_MEAN), "std": list(openclip.OPENAI_STD)}
    default.update(interpolation="bicubic", resize_mode="shortest")
    served = 0
    for pair in registry:
        try:
            openclip.check_config(pair["model_config"], {})
        except ModelLayoutError:
            continue  # an architecture the conversion refuses by name (test_openclip.py)
        served += 1
        ours = dict(default, **openclip.tag_preprocessing(pair["model_name"], pair["pretrained"]))
        ours = {key: list(value) if isinstance(value, tuple) else value for key, value in ours.items()}
        assert ours == pair["preprocess"], (pair["model_name"], pair["pretrained"])
    assert served == 78  # open_clip 2.29.0: ViT-B/L/H/g/bigG of the standard architecture


def test_meta_is_the_references_config_json_and_vectors_are_normalised(built):
    models = built[0][("ViT-H-14", "dfn5b")]
    source = detect(models, clip_tokenizer=BPE)
    config = json.loads((models / "openclip" / "config.json").read_text())
    assert config["cache_dir"] == "./models/openclip" and config["pretrained"] == "dfn5b"
    assert meta(source) == config
    assert normalization(source) == {"text": True, "image": True}


def test_a_missing_tokenizer_names_the_setting_and_an_installed_open_clip_is_used(built, tmp_path, monkeypatch):
    models = built[0][("ViT-B-32", "laion2b_s34b_b79k")]
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "open_clip" not in p])
    with pytest.raises(ModelLayoutError, match="VECTORIZER_CLIP_TOKENIZER"):
        detect(models)
    with pytest.raises(ModelLayoutError, match=f"{tmp_path} holds none"):
        detect(models, clip_tokenizer=tmp_path)
    package = tmp_path / "site" / "open_clip"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('never imported: it needs torchvision')\n")
    shutil.copy(BPE, package / openclip.BPE_NAME)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert detect(models).tokenizer == package / openclip.BPE_NAME


def test_a_cache_with_weights_of_two_repositories_is_refused_naming_both(built, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(built[0][("ViT-B-32", "laion2b_s34b_b79k")], models, symlinks=True)
    other = built[0][("ViT-L-14", "laion2b_s32b_b82k")] / "openclip" / "models--laion--CLIP-ViT-L-14-laion2B-s32B-b82K"
    shutil.copytree(other, models / "openclip" / other.name, symlinks=True)
    with pytest.raises(ModelLayoutError, match="laion/CLIP-ViT-B-32-laion2B-s34B-b79K, laion/CLIP-ViT-L-14"):
        detect(models, clip_tokenizer=BPE)


def test_the_service_serves_the_folder_with_the_tokenizer_setting(built):
    pair = ("ViT-B-32-quickgelu", "openai")
    models, images, _ = built
    reference = np.load(models[pair] / "reference.npz")
    server = ServerProcess(models[pair], env={"VECTORIZER_CLIP_TOKENIZER": str(BPE)}).start()
    try:
        server.wait_ready()
        body = {"texts": TEXTS[:3], "images": [base64.b64encode(images[0].read_bytes()).decode()]}
        answer = server.post("/vectorize", body).json()
        assert_parity(answer["textVectors"], reference["texts"][:3])
        assert_parity(answer["imageVectors"], reference["images"][:1])
        described = server.get("/meta").json()
        ours = described.pop("clip-vectorizer")  # our own key beside the reference's
        assert described == json.loads((models[pair] / "openclip" / "config.json").read_text())
        assert (ours["model"]["family"], ours["model"]["normalized"]) == ("openclip", {"text": True, "image": True})
    finally:
        server.stop()


def test_the_onnx_backend_serves_the_folder_and_its_cache_follows_the_weights_in_the_hub_cache(built, tmp_path):
    import os

    from tests.helpers import OnnxRun
    from vectorizer_module.backends.onnx_backend import cache_key

    models, images, _ = built
    root = models[("ViT-L-14", "laion2b_s32b_b82k")]
    reference = np.load(root / "reference.npz")
    source = detect(root, clip_tokenizer=BPE)
    onnx = OnnxRun(source, tmp_path)
    assert_parity(unit(onnx.texts(TEXTS)), reference["texts"], min_cosine=0.9999, max_abs=1e-4)
    pictures = [Image.open(path).convert("RGB") for path in images]
    assert_parity(unit(onnx.images(pictures)), reference["images"], min_cosine=0.9999, max_abs=1e-4)
    # the weights sit two folders down, linked to a blob: a new download of them is a new export
    copy = tmp_path / "copy" / "models"
    shutil.copytree(root, copy, symlinks=True)
    before = cache_key(copy / "openclip", "text")
    blob = openclip.weights_file(copy / "openclip").resolve()
    os.utime(blob, ns=(blob.stat().st_atime_ns, blob.stat().st_mtime_ns + 10**9))
    assert cache_key(copy / "openclip", "text") != before
