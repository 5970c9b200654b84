"""VECTORIZER_NORMALIZE=auto and /meta, per layout, against what the reference multi2vec-clip image's own
code computes for that layout (reproduced here with transformers and sentence-transformers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import CLIPConfig

from clip_training.random_models.clip import save_random_model
from tests import media
from tests.helpers import make_engine
from tests.reference import ReferenceClip, assert_parity, unit

TEXTS = ["a photo of a cat", "a red circle on the left"]


def pictures():
    return [media.photo(80, 60, seed=1), media.photo(50, 90, seed=2)]


def pngs():
    return [media.encode(p, "PNG") for p in pictures()]


def meta(engine) -> dict:
    return json.loads(engine.meta_body)


def test_transformers_clip_is_normalised_and_meta_is_its_clip_config(tmp_path):
    """The image's openai_clip path: CLIPModel features divided by their norm; /meta CLIPConfig.to_dict()."""
    for layout in ("huggingface", "reference-image"):
        root = save_random_model(tmp_path / layout, "tiny", layout, seed=11)
        engine = make_engine(root, cache_size=0)
        weights = root / "models" / "openai_clip" if layout == "reference-image" else root
        reference = ReferenceClip(weights)
        texts, images = engine.embed(TEXTS, pngs())
        assert_parity(texts, unit(reference.texts(TEXTS)))
        assert_parity(images, unit(reference.images(pictures())))
        body = meta(engine)
        expected = CLIPConfig.from_pretrained(str(weights)).to_dict()
        assert set(body) == set(expected) | {"clip-vectorizer"}
        assert body["projection_dim"] == expected["projection_dim"]
        assert body["clip-vectorizer"]["model"]["normalized"] == {"text": True, "image": True}


@pytest.mark.parametrize("normalize_module", [False, True], ids=["plain", "with-Normalize"])
def test_sentence_transformers_models_give_what_encode_gives(tmp_path, normalize_module):
    """The image's sentence-transformers path (models/clip + models/text): SentenceTransformer.encode as it
    is, normalised only where modules.json lists Normalize; /meta {"clip_model", "text_model"}."""
    from sentence_transformers import SentenceTransformer

    root = save_random_model(tmp_path / "st", "tiny", "reference-image-st", seed=12)
    models = root / "models" if (root / "models").is_dir() else root
    if normalize_module:
        for part in ("clip", "text"):
            listed = json.loads((models / part / "modules.json").read_text())
            normalize = {"idx": len(listed), "name": str(len(listed)), "path": ""}
            listed.append({**normalize, "type": "sentence_transformers.models.Normalize"})
            (models / part / "modules.json").write_text(json.dumps(listed))
    engine = make_engine(root, cache_size=0)
    texts, images = engine.embed(TEXTS, pngs())
    expected_texts = SentenceTransformer(str(models / "text"), device="cpu").encode([{"text": t} for t in TEXTS])
    expected_images = SentenceTransformer(str(models / "clip"), device="cpu").encode(pictures())
    assert_parity(texts, expected_texts, min_cosine=0.9999, max_abs=1e-3)
    assert_parity(images, expected_images, min_cosine=0.9999, max_abs=1e-3)
    norms = np.linalg.norm(np.concatenate([texts, images]), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5) is normalize_module
    body = meta(engine)
    assert set(body) == {"clip_model", "text_model", "clip-vectorizer"}
    assert body["clip-vectorizer"]["model"]["normalized"] == dict.fromkeys(("text", "image"), normalize_module)


def test_the_settings_override_the_layout(tmp_path):
    root = save_random_model(tmp_path / "st", "tiny", "reference-image-st", seed=13)
    always = make_engine(root, cache_size=0, normalize=True)
    never = make_engine(tmp_path / "st", cache_size=0, normalize=False)
    clip_root = save_random_model(tmp_path / "hf", "tiny", "huggingface", seed=13)
    never_clip = make_engine(clip_root, cache_size=0, normalize=False)
    assert np.allclose(np.linalg.norm(always.embed(TEXTS, [])[0], axis=1), 1.0, atol=1e-6)
    assert not np.allclose(np.linalg.norm(never.embed(TEXTS, [])[0], axis=1), 1.0, atol=1e-3)
    assert not np.allclose(np.linalg.norm(never_clip.embed(TEXTS, [])[0], axis=1), 1.0, atol=1e-3)
