"""Our towers, loaded from every supported layout, against transformers' own CLIPModel + CLIPProcessor.

Bar (fp32): cosine >= 0.99999 and max abs difference <= 1e-5, for a tiny model and for the exact
``openai/clip-vit-base-patch32`` architecture (random weights).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from clip_training.random_models.clip import LAYOUTS, save_random_model, write_layout
from tests import media
from tests.reference import ReferenceClip, assert_parity
from vectorizer_module.models.loading import detect, load_towers
from vectorizer_module.preprocessing.images import decode_image

TEXTS = ["a photo of a cat", "a red circle on the left", "", "  spaces  and CAPITALS!  ", " ".join(["long"] * 500)]
LAYOUT_ROOT = {"reference-image": "models", "reference-image-st": "models"}


def images():
    data = [
        media.encode(media.photo(640, 480, seed=1), "JPEG", quality=90),
        media.encode(media.photo(300, 500, seed=2), "PNG"),
        media.all_formats()["png-rgba"],
    ]
    return [decode_image(d, f"images[{i}]", max_pixels=10**8) for i, d in enumerate(data)]


@pytest.fixture(scope="module", params=["tiny", pytest.param("vit-b-32", marks=pytest.mark.slow)])
def built(request, tmp_path_factory):
    """The model saved once by transformers, its reference vectors, and a folder for layouts."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "vit-b-32":
        hf_dir = request.getfixturevalue("vit_model")  # shared with the integration tests
    else:
        hf_dir = save_random_model(root / "hf", request.param, "huggingface", seed=3)
    reference = ReferenceClip(hf_dir)
    pictures = images()
    return hf_dir, root, reference.texts(TEXTS), reference.images(pictures), pictures


@pytest.mark.parametrize("layout", [layout for layout in LAYOUTS if not layout.endswith("multilingual")])
def test_vectors_match_transformers_for_every_layout(built, layout):
    hf_dir, root, text_reference, image_reference, pictures = built
    model_dir = write_layout(hf_dir, root / layout, layout)
    source = detect(model_dir)
    assert source.layout == (
        "reference-image"
        if layout.startswith("reference")
        else "sentence-transformers"
        if layout.startswith("sentence")
        else "huggingface"
    )
    towers = load_towers(source)
    assert_parity(towers.query.embed(TEXTS).numpy(), text_reference)
    assert_parity(towers.items.embed(pictures).numpy(), image_reference)


def test_long_text_is_truncated_to_the_context(built):
    hf_dir, *_ = built
    towers = load_towers(detect(hf_dir))
    batch = towers.query.preprocess([" ".join(["word"] * 500)])
    assert batch["input_ids"].shape[1] == towers.query.max_length == 77


def test_sentence_transformers_reads_our_layout_with_the_same_vectors(tmp_path):
    """Our sentence-transformers layouts are the real format: the library itself loads them."""
    from sentence_transformers import SentenceTransformer

    hf_dir = save_random_model(tmp_path / "hf", "tiny", "huggingface", seed=4)
    ours = load_towers(detect(hf_dir))
    for layout in ("sentence-transformers", "sentence-transformers-legacy"):
        st = SentenceTransformer(str(write_layout(hf_dir, tmp_path / layout, layout)), device="cpu")
        st_vectors = st.encode([{"text": t} for t in TEXTS[:3]], convert_to_numpy=True)
        assert_parity(ours.query.embed(TEXTS[:3]).numpy(), st_vectors)


def test_a_directory_saved_by_sentence_transformers_loads(tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer

    hf_dir = save_random_model(tmp_path / "hf", "tiny", "huggingface", seed=5)
    saved = tmp_path / "st-saved"
    st = SentenceTransformer(modules=[Transformer(str(hf_dir))], device="cpu")
    st.save(str(saved))
    ours = load_towers(detect(saved))
    assert ours.info.layout == "sentence-transformers"
    pictures = images()
    st_images = st.encode(pictures, convert_to_numpy=True)
    if importlib.util.find_spec("torchvision") is None:
        assert_parity(ours.items.embed(pictures).numpy(), st_images)
    else:  # sentence-transformers then resizes with torchvision's processor, a few 1e-4 away from PIL's
        assert_parity(ours.items.embed(pictures).numpy(), st_images, min_cosine=0.9999, max_abs=1e-3)
    assert np.isfinite(ours.query.embed(["x"]).numpy()).all()
