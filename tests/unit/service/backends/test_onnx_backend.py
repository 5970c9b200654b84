"""The ONNX Runtime backend against the torch towers (cosine >= 0.9999), through the engine."""

from pathlib import Path

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
    files = sorted(p.name for p in cache.iterdir() if "int8" not in p.name)
    assert [f.split("-")[0] for f in files] == ["image", "image", "text", "text"]
    assert [f.endswith(".onnx.data") for f in files] == [False, True, False, True]  # weights apart, mapped
    assert b'"backend":"onnx"' in onnx_engine.meta_body
    again = make_engine(tiny_model, cache_size=0, backend="onnx", onnx_cache=str(cache))
    assert sorted(p.name for p in cache.iterdir() if "int8" not in p.name) == files
    assert np.array_equal(again.embed(["x"], [])[0], onnx_engine.embed(["x"], [])[0])


def test_onnx_refuses_cuda(tiny_model):
    from vectorizer_module.config import Settings
    from vectorizer_module.engine import Engine
    from vectorizer_module.models.loading import detect

    engine = Engine(Settings(model=str(tiny_model), backend="onnx", dtype="float16"), detect(tiny_model))
    with pytest.raises(RuntimeError, match="onnx runs on the CPU in float32 or int8"):
        engine.load()


def test_int8_quantises_the_matrix_products_once_and_keeps_the_vectors_close(engines, tiny_model):
    import onnx

    torch_engine, _, cache = engines
    int8 = make_engine(tiny_model, cache_size=0, backend="onnx", dtype="int8", onnx_cache=str(cache))
    quantised = sorted(cache.glob("*-int8.onnx"))
    assert [p.name.split("-")[0] for p in quantised] == ["image", "text"]
    for path in quantised:
        operators = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert {"DynamicQuantizeLinear", "MatMulInteger"} <= operators
        float32 = path.with_name(path.name.replace("-int8", ""))
        assert path.stat().st_size < float32.stat().st_size + Path(f"{float32}.data").stat().st_size
    assert b'"dtype":"int8"' in int8.meta_body
    texts = ["a photo of a cat", "a red circle on a blue background"]
    images = [media.encode(media.photo(640, 480, seed=s), "PNG") for s in (4, 5)]
    for got, want in zip(int8.embed(texts, images), torch_engine.embed(texts, images)):
        for g, w in zip(got, want):
            assert 0.95 <= cosine(g, w) < 1.0  # close, and not the float32 graph's
    stamps = [p.stat().st_mtime_ns for p in quantised]
    again = make_engine(tiny_model, cache_size=0, backend="onnx", dtype="int8", onnx_cache=str(cache))
    assert [p.stat().st_mtime_ns for p in quantised] == stamps
    assert np.array_equal(again.embed(texts, [])[0], int8.embed(texts, [])[0])


def test_int8_needs_the_onnx_backend():
    from vectorizer_module.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="VECTORIZER_BACKEND=onnx"):
        load_settings(environ={"VECTORIZER_DTYPE": "int8", "VECTORIZER_BACKEND": "torch"})
    for backend in ("onnx", "auto"):
        assert load_settings(environ={"VECTORIZER_DTYPE": "int8", "VECTORIZER_BACKEND": backend}).dtype == "int8"


def test_export_onnx_makes_the_graphs_a_service_then_finds(tiny_model, tmp_path):
    from vectorizer_module.cli import main

    assert main(["export-onnx", "--model", str(tiny_model), "--onnx-cache", str(tmp_path)]) == 0
    made = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert sorted(name.split("-")[0] for name in made if name.endswith(".onnx")) == ["image", "text"]
    engine = make_engine(tiny_model, cache_size=0, backend="onnx", onnx_cache=str(tmp_path))
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == made  # nothing exported again
    assert engine.embed(["a red circle"], [])[0].shape == (1, engine.dimension)


def test_auto_serves_in_torch_when_the_export_cannot_be_written(tiny_model, tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    engine = make_engine(tiny_model, cache_size=0, backend="auto", onnx_cache=str(blocked / "onnx"))
    assert engine.backend_choice.name == "torch" and "export failed" in engine.backend_choice.reason
    assert b'"backend":"torch"' in engine.meta_body and "export failed" in caplog.text
    with pytest.raises(OSError):
        make_engine(tiny_model, cache_size=0, backend="onnx", onnx_cache=str(blocked / "onnx"))
