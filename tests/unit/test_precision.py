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
    from vectorizer_module.finetune.draws import mean_score, score_draws

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
