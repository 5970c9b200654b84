"""VECTORIZER_DTYPE=auto: bfloat16 on a CPU with native bfloat16 (torch backend), checked on the model and
kept only within the bounds: vectors at cosine >= 0.999 to float32's, and the demo model's retrieval as
good (wild-split hit@1 down by 0.01 at most). bfloat16 runs on any x86 CPU in torch (slowly where it is
emulated), so these tests hold on hosts without the flags too."""

import logging

import numpy as np
import pytest
import torch

from tests import media
from tests.helpers import make_engine
from vectorizer_module import precision
from vectorizer_module.models.loading import BUILTIN_DEMO_DIR, detect, load_towers

AMD_ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
INTEL_SPR = "processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8 avx512_bf16\n"
OLDER = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"
TEXTS = ["a red circle", "a photo of a dog near a small tree", "blue square on a white background", "x"]


@pytest.fixture
def bf16_host(monkeypatch):
    """Whatever this machine is, the service sees a CPU with avx512_bf16."""
    monkeypatch.setattr(precision, "_host_cpuinfo", lambda: AMD_ZEN4)


@pytest.mark.parametrize(
    "cpuinfo,cuda,backend,setting,expected",
    [
        (AMD_ZEN4, False, "torch", "auto", ("bfloat16", True)),
        (INTEL_SPR, False, "torch", "auto", ("bfloat16", True)),
        (OLDER, False, "torch", "auto", ("float32", False)),
        ("", False, "torch", "auto", ("float32", False)),  # no /proc/cpuinfo
        (AMD_ZEN4, False, "onnx", "auto", ("float32", False)),
        (AMD_ZEN4, True, "torch", "auto", ("float16", False)),  # CUDA defaults unchanged
        (AMD_ZEN4, False, "torch", "float32", ("float32", False)),  # what a user who needs fp32 sets
        (OLDER, False, "torch", "bfloat16", ("bfloat16", False)),  # asked for: not second-guessed
    ],
)
def test_auto_resolves_per_cpu_capability_and_backend(cpuinfo, cuda, backend, setting, expected):
    choice = precision.resolve(setting, enable_cuda=cuda, backend=backend, flags=precision.cpu_bf16_flags(cpuinfo))
    assert (choice.dtype, choice.checked) == expected
    assert choice.reason  # said in the log and in /meta


def test_the_demo_model_keeps_its_vectors_and_its_retrieval_in_bfloat16():
    """The auto rule's bounds on the shipped demo model: cosine >= 0.999 on real inputs (texts and photos,
    not only the check's examples) and wild-split hit@1 within 0.01 of float32's (two draws)."""
    from clip_training.draws import mean_score, score_draws

    towers = load_towers(detect(BUILTIN_DEMO_DIR))
    images = [media.photo(w, h, seed) for seed, (w, h) in enumerate([(64, 64), (120, 80), (40, 90)])]
    float32 = (towers.query.embed(TEXTS), towers.items.embed(images))
    hit = {}
    for dtype in (torch.float32, torch.bfloat16):
        for tower in (towers.query, towers.items):
            tower.to(dtype=dtype)
        draws = list(score_draws(towers.query, towers.items, "wild", seeds=(0, 7)))
        hit[dtype] = mean_score(draws, "colour+shape", "hit@1")
    assert precision.min_cosine(float32, (towers.query.embed(TEXTS), towers.items.embed(images))) >= 0.999
    assert hit[torch.bfloat16] >= hit[torch.float32] - 0.01, hit


def test_the_vit_b32_architecture_stays_within_the_cosine_bound(vit_model):
    towers = load_towers(detect(vit_model))
    images = [media.photo(w, h, seed) for seed, (w, h) in enumerate([(224, 224), (640, 480), (90, 300)])]
    float32 = (towers.query.embed(TEXTS), towers.items.embed(images))
    for tower in (towers.query, towers.items):
        tower.to(dtype=torch.bfloat16)
    assert precision.min_cosine(float32, (towers.query.embed(TEXTS), towers.items.embed(images))) >= 0.999


def test_auto_serves_bfloat16_says_why_and_repeats_stay_bit_identical(bf16_host, caplog):
    with caplog.at_level(logging.INFO, logger="vectorizer_module.engine"):
        engine = make_engine(BUILTIN_DEMO_DIR, dtype="auto", max_wait_ms=50.0)  # the vector cache on, as served
    assert engine.towers.query.dtype == torch.bfloat16 and engine.towers.items.dtype == torch.bfloat16
    ours = engine._meta()["clip-vectorizer"]
    assert (
        ours["dtype"] == "bfloat16" and "avx512_bf16" in ours["dtype_reason"] and "cosine 0.9" in ours["dtype_reason"]
    )
    assert any("precision bfloat16" in r.getMessage() for r in caplog.records)
    alone, _ = engine.embed([TEXTS[0]], [])
    together, _ = engine.embed(TEXTS[::-1], [])
    assert np.array_equal(alone[0], together[-1])  # the same bits in another request and batch
    exact, _ = make_engine(BUILTIN_DEMO_DIR, dtype="float32", cache_size=0).embed(TEXTS, [])
    assert precision.min_cosine([torch.from_numpy(exact)], [torch.from_numpy(together[::-1].copy())]) >= 0.999


def test_a_model_outside_the_bound_is_served_in_float32_from_its_files(bf16_host, monkeypatch, caplog):
    monkeypatch.setattr(precision, "MIN_COSINE", 1.000001)  # no bfloat16 vector can reach it
    with caplog.at_level(logging.INFO, logger="vectorizer_module.engine"):
        engine = make_engine(BUILTIN_DEMO_DIR, dtype="auto", cache_size=0)
    assert engine.towers.query.dtype == torch.float32 and engine._meta()["clip-vectorizer"]["dtype"] == "float32"
    assert any("below 1.000001" in r.getMessage() for r in caplog.records)
    exact, _ = make_engine(BUILTIN_DEMO_DIR, dtype="float32", cache_size=0).embed(TEXTS, [])
    assert np.array_equal(engine.embed(TEXTS, [])[0], exact)  # reloaded, not converted back from bfloat16


@pytest.mark.parametrize(
    ("setting", "dtype", "cuda", "exportable", "expected"),
    [
        ("auto", "float32", False, True, "onnx"),  # a CPU without native bfloat16: ONNX Runtime's float32
        ("auto", "bfloat16", False, True, "torch"),
        ("auto", "float32", True, True, "torch"),
        ("auto", "float16", True, True, "torch"),
        ("auto", "float32", False, False, "torch"),  # SigLIP 2's vision tower does not export
        ("auto", "int8", False, True, "onnx"),
        ("torch", "float32", False, True, "torch"),
        ("onnx", "float32", False, True, "onnx"),
    ],
)
def test_auto_backend_follows_the_dtype_the_device_and_the_family(setting, dtype, cuda, exportable, expected):
    choice = precision.resolve_backend(setting, dtype=dtype, enable_cuda=cuda, exportable=exportable, family="siglip")
    assert choice.name == expected
    assert choice.reason.startswith("auto" if setting == "auto" else "VECTORIZER_BACKEND")


def test_auto_runs_float32_in_onnx_runtime_and_siglip2_in_torch(tiny_model, tmp_path, caplog):
    """On a CPU without native bfloat16 (float32 by auto, or asked for), the backend auto picks ONNX Runtime
    for families that export, with the same vectors as torch's float32, and says so."""
    pytest.importorskip("onnxruntime")
    from clip_training.random_models.siglip import save_random_model

    caplog.set_level(logging.INFO, logger="vectorizer_module.engine")
    torch_engine = make_engine(tiny_model, cache_size=0)
    auto = make_engine(tiny_model, cache_size=0, backend="auto", onnx_cache=str(tmp_path / "onnx"))
    assert auto.backend.name == "onnx" and b'"backend":"onnx"' in auto.meta_body
    assert "with onnx (auto: float32 on the CPU" in caplog.text
    texts, images = ["a red circle", "two dogs"], [media.encode(media.photo(90, 60, seed=3), "PNG")]
    for got, want in zip(auto.embed(texts, images), torch_engine.embed(texts, images)):
        assert precision.min_cosine([torch.from_numpy(want)], [torch.from_numpy(got)]) >= 0.9999
    siglip2 = save_random_model(tmp_path / "siglip2", naflex=True)
    siglip2 = make_engine(siglip2, backend="auto", onnx_cache=str(tmp_path / "onnx"))
    assert siglip2.backend_choice.name == "torch" and "do not export" in siglip2.backend_choice.reason
