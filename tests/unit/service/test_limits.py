"""The worker count `auto` makes of a host's or container's limits (vectorizer_module/limits.py), on fake
cgroup trees of both versions."""

import pytest

from tests.fake_cgroup import fake_host
from vectorizer_module import limits
from vectorizer_module.config import load_settings

GIB = 1024**3
VIT_B32 = 605 * 1024**2  # bytes of ViT-B/32's float32 weights


@pytest.mark.parametrize("version", [1, 2])
def test_cores_follow_the_affinity_mask_capped_by_the_cpu_quota(monkeypatch, tmp_path, version):
    for quota, cores in (((250000, 100000), 3), (None, 8), ((1600000, 100000), 8), ((50000, 100000), 1)):
        fake_host(monkeypatch, tmp_path / f"{quota}", 8, cpu_quota=quota, version=version)
        assert limits.available_cores() == cores, quota
    monkeypatch.setattr(limits, "CGROUP_ROOT", tmp_path / "no cgroup here")
    assert limits.available_cores() == 8


@pytest.mark.parametrize("version", [1, 2])
def test_the_memory_limit_is_read_from_either_cgroup_version(monkeypatch, tmp_path, version):
    fake_host(monkeypatch, tmp_path / "limited", 4, memory=12 * GIB, version=version)
    assert limits.memory_limit_bytes() == 12 * GIB
    fake_host(monkeypatch, tmp_path / "unlimited", 4, version=version)
    assert limits.memory_limit_bytes() is None


@pytest.mark.parametrize(
    "cores,cuda,workers", [(2, False, 1), (64, False, 1), (16, True, 8), (6, True, 3), (1, True, 1)]
)
def test_without_a_memory_limit_auto_is_one_on_a_cpu_host_and_half_the_cores_at_most_eight_with_cuda(
    monkeypatch, tmp_path, cores, cuda, workers
):
    fake_host(monkeypatch, tmp_path, cores)
    settings = load_settings(environ={"ENABLE_CUDA": "true" if cuda else "false"})
    assert settings.worker_count == workers
    assert settings.worker_count * settings.threads_per_worker <= max(cores, 1)
    assert settings.threads_per_worker == max(1, cores // workers)


@pytest.mark.parametrize("version", [1, 2])
def test_a_pod_with_a_cpu_request_but_no_limit_gets_no_more_cuda_workers_than_its_memory_holds(
    monkeypatch, tmp_path, version
):
    # the case: a 16-core GPU node, no CPU quota, a 12 GiB memory limit, ViT-B/32
    fake_host(monkeypatch, tmp_path, 16, memory=12 * GIB, version=version)
    plan = limits.auto_workers(True, VIT_B32)
    per_worker = limits.CUDA_RUNTIME_MB + 605
    assert plan.count == (12 * 1024 - limits.ARBITER_MB) // per_worker == 5
    assert plan.count * per_worker + limits.ARBITER_MB <= 12 * 1024 < (plan.count + 1) * per_worker
    for figure in ("12288 MiB", f"{per_worker} MiB", "weights 605", "-> 5"):
        assert figure in plan.explanation, plan.explanation
    # a model ten times the size: fewer workers; the same limit without a model's weights: the cores decide
    assert limits.auto_workers(True, 10 * VIT_B32).count == 1
    assert limits.auto_workers(True, 0).count == 6


def test_the_memory_limit_never_raises_the_count_and_never_takes_it_below_one(monkeypatch, tmp_path):
    fake_host(monkeypatch, tmp_path / "roomy", 4, memory=256 * GIB)
    assert limits.auto_workers(True, VIT_B32).count == 2  # the cores decide: 4 // 2
    assert limits.auto_workers(False, VIT_B32).count == 1
    fake_host(monkeypatch, tmp_path / "tight", 16, memory=1 * GIB)
    plan = limits.auto_workers(True, VIT_B32)
    assert plan.count == 1 and "not even one fits" in plan.explanation


def test_weights_bytes_counts_the_weight_files_of_a_model_directory(tmp_path):
    (tmp_path / "text").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "text" / "pytorch_model.bin").write_bytes(b"x" * 300)
    (tmp_path / "config.json").write_text("{}")
    assert limits.weights_bytes(tmp_path) == 1300
    assert limits.weights_bytes(None) == 0
