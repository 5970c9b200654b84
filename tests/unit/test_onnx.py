"""The ONNX Runtime backend against the torch towers (cosine >= 0.9999), through the engine."""

import numpy as np
import pytest

from tests import media
from tests.helpers import make_engine
from tests.reference import cosine

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def engines(tiny_model, tmp_path_factory):
    cache = tmp_path_factory.mktemp("onnx")
    return (
        make_engine(tiny_model, cache_size=0),
        make_engine(tiny_model, cache_size=0, backend="onnx", onnx_cache=str(cache)),
        cache,
    )


def test_onnx_vectors_match_torch(engines):
    torch_engine, onnx_engine, _ = engines
    texts = ["a photo of a cat", "", " ".join(["long"] * 300), "short"]
    images = [media.encode(media.photo(640, 480, seed=s), "PNG") for s in (1, 2, 3)]
    want_t, want_i = torch_engine.embed(texts, images)
    got_t, got_i = onnx_engine.embed(texts, images)
    for got, want in zip(np.concatenate([got_t, got_i]), np.concatenate([want_t, want_i])):
        assert cosine(got, want) >= 0.9999
    assert np.abs(got_t - want_t).max() < 1e-4 and np.abs(got_i - want_i).max() < 1e-4


def test_the_export_is_cached_and_the_meta_says_onnx(engines, tiny_model):
    _, onnx_engine, cache = engines
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and files[0].startswith("image-") and files[1].startswith("text-")
    assert b'"backend":"onnx"' in onnx_engine.meta_body
    again = make_engine(tiny_model, cache_size=0, backend="onnx", onnx_cache=str(cache))
    assert sorted(p.name for p in cache.iterdir()) == files
    assert np.array_equal(again.embed(["x"], [])[0], onnx_engine.embed(["x"], [])[0])


def test_onnx_refuses_cuda(tiny_model):
    from vectorizer_module.config import Settings
    from vectorizer_module.engine import Engine
    from vectorizer_module.models.loading import detect

    engine = Engine(Settings(model=str(tiny_model), backend="onnx", dtype="float16"), detect(tiny_model))
    with pytest.raises(RuntimeError, match="onnx runs on the CPU in float32"):
        engine.load()
