"""The container files say what the tests run (no Docker engine here): the compose files wire Weaviate's
multi2vec-clip to our service's name and port, and the Dockerfile starts the same command as the tests,
as a non-root user, with a readiness health check."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.gpu.yml"]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def final_stage(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (word, _) in enumerate(pairs) if word == "FROM")
    return pairs[last_from:]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for word, rest in stage:
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def compose(name: str) -> dict:
    docker = shutil.which("docker")
    if docker:  # `docker compose config` needs no engine, but the compose plugin is not installed here
        done = subprocess.run(
            [docker, "compose", "-f", str(DOCKER / name), "config", "--format", "json"],
            capture_output=True,
            text=True,
            env={"CLIP_MODEL_DIR": "/tmp", "PATH": str(Path(docker).parent)},
        )
        if done.returncode == 0:
            return json.loads(done.stdout)
    return yaml.safe_load((DOCKER / name).read_text())


def test_entrypoint_is_the_command_the_tests_start(monkeypatch):
    from tests import server_process

    started = []
    monkeypatch.setattr(server_process.subprocess, "Popen", lambda command, **kw: started.append(command))
    server_process.ServerProcess(None).start()
    entrypoint = json.loads(dict(final_stage(instructions(DOCKER / "Dockerfile")))["ENTRYPOINT"])
    assert entrypoint == ["python", "-m", "vectorizer_module"]
    assert started[0][1:3] == entrypoint[1:]


def test_dockerfile_runs_unprivileged_healthy_and_listening_on_8080():
    stage = final_stage(instructions(DOCKER / "Dockerfile"))
    users = [rest for word, rest in stage if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    env = env_of(stage)
    assert env["VECTORIZER_HOST"] == "0.0.0.0" and env["VECTORIZER_PORT"] == "8080"
    assert ("EXPOSE", "8080") in stage
    healthcheck = [rest for word, rest in stage if word == "HEALTHCHECK"]
    assert len(healthcheck) == 1 and "http://127.0.0.1:8080/.well-known/ready" in healthcheck[0]
    assert "!= 204" in healthcheck[0]


def test_dockerfile_is_multi_stage_with_build_arguments():
    pairs = instructions(DOCKER / "Dockerfile")
    assert sum(word == "FROM" for word, _ in pairs) >= 3
    args = {rest.split("=")[0] for word, rest in pairs if word == "ARG"}
    assert {"BASE_IMAGE", "TORCH_INDEX", "MODEL_ID", "CLIP_MODEL_NAME", "TEXT_MODEL_NAME"} <= args


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_wires_weaviate_to_our_service(name):
    services = compose(name)["services"]
    weaviate = next(s for s in services.values() if "weaviate" in str(s.get("image", "")))
    env = weaviate["environment"]
    assert "multi2vec-clip" in env["ENABLE_MODULES"].split(",")
    match = re.fullmatch(r"http://([\w.-]+):(\d+)/?", env["CLIP_INFERENCE_API"])
    assert match, env["CLIP_INFERENCE_API"]
    host, port = match.groups()
    assert host in services and host != "weaviate"
    ours = services[host]
    assert ours["build"]["dockerfile"] == "docker/Dockerfile"
    assert port == env_of(final_stage(instructions(DOCKER / "Dockerfile")))["VECTORIZER_PORT"]
    assert any(str(v).endswith(":/models:ro") for v in ours["volumes"])


def test_gpu_compose_turns_cuda_on_and_reserves_a_gpu():
    ours = compose("docker-compose.gpu.yml")["services"]["multi2vec-clip"]
    assert ours["environment"]["ENABLE_CUDA"] in ("true", "1")
    devices = ours["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert "cu" in ours["build"]["args"]["TORCH_INDEX"].rsplit("/", 1)[-1]


def _download_module():
    spec = importlib.util.spec_from_file_location("download_model", DOCKER / "download_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, []),
        ({"MODEL_ID": "openai/clip-vit-base-patch32"}, [("openai/clip-vit-base-patch32", "/m")]),
        (
            {"CLIP_MODEL_NAME": "sentence-transformers/clip-ViT-B-32"},
            [("sentence-transformers/clip-ViT-B-32", "/m/clip"), ("sentence-transformers/clip-ViT-B-32", "/m/text")],
        ),
        ({"CLIP_MODEL_NAME": "c", "TEXT_MODEL_NAME": "t"}, [("c", "/m/clip"), ("t", "/m/text")]),
    ],
)
def test_download_script_downloads_what_the_build_arguments_name(monkeypatch, env, expected):
    module = _download_module()
    calls = []
    monkeypatch.setattr(module, "snapshot_download", lambda repo, local_dir, **_: calls.append((repo, local_dir)))
    for key in ("MODEL_ID", "CLIP_MODEL_NAME", "TEXT_MODEL_NAME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    module.main("/m")
    assert calls == expected


def test_an_openclip_repository_without_tokenizer_files_gets_clips(monkeypatch, tmp_path):
    module = _download_module()
    calls = []

    def fake_download(repo, local_dir, allow_patterns=None):
        calls.append((repo, allow_patterns))
        if repo == "laion/some-openclip":  # what an OpenCLIP-only repository holds
            (tmp_path / "open_clip_config.json").write_text("{}")
            (tmp_path / "open_clip_model.safetensors").write_bytes(b"")

    monkeypatch.setattr(module, "snapshot_download", fake_download)
    monkeypatch.delenv("CLIP_MODEL_NAME", raising=False)
    monkeypatch.setenv("MODEL_ID", "laion/some-openclip")
    module.main(str(tmp_path))
    assert calls == [("laion/some-openclip", None), ("openai/clip-vit-base-patch32", ["vocab.json", "merges.txt"])]
    (tmp_path / "vocab.json").write_text("{}")
    (tmp_path / "merges.txt").write_text("")
    calls.clear()
    module.main(str(tmp_path))
    assert calls == [("laion/some-openclip", None)]  # tokenizer files present: nothing more
