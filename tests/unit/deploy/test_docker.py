"""The container files say what the tests run: the compose files wire Weaviate's multi2vec-clip to our
service's name and port, the Dockerfile starts the same command as the tests, as a non-root user, with a
readiness health check, from BASE_IMAGE in every stage and a small build context; its Python install
steps, run outside Docker, resolve torch once; the model stage bakes what its argument names; and the
model download takes only the files the served layout reads. scripts/container_check.sh builds and runs
the image for real (opt-in: it needs a Docker engine)."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from tests.helpers import build_arguments, download_script

REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.gpu.yml"]
MODEL_DIR_OVERLAY = "docker-compose.model-dir.yml"


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


def named_stage(pairs: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    """The instructions of the stage ``FROM ... AS name``, its FROM first."""
    starts = [i for i, (word, _) in enumerate(pairs) if word == "FROM"] + [len(pairs)]
    for begin, end in zip(starts, starts[1:]):
        if pairs[begin][1].split()[-2:] == ["AS", name] or pairs[begin][1].split()[-2:] == ["as", name]:
            return pairs[begin:end]
    raise AssertionError(f"no stage named {name}")


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


def test_the_final_stage_runs_the_python_environment_the_build_stage_made():
    """The entrypoint's `python` is the one of the virtual environment copied from the build stage (the
    first directory on PATH), at the path it was made at (a virtual environment is not relocatable)."""
    stage = final_stage(instructions(DOCKER / "Dockerfile"))
    copies = [rest.split()[1:] for word, rest in stage if word == "COPY" and rest.startswith("--from=build ")]
    assert len(copies) == 1
    source, target = copies[0]
    assert source == target
    assert env_of(stage)["PATH"].split(":")[0] == f"{target}/bin"


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


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_needs_no_variable_and_stops_after_the_shutdown_grace(name):
    """`docker compose -f docker/docker-compose.yml up` with nothing set: no `${VAR:?...}` (a required
    variable), the image's own model; Docker waits for the service's shutdown grace before killing it
    (its default is 10 s)."""
    text = (DOCKER / name).read_text()
    assert not re.search(r"\$\{\w+:?\?", text)
    ours = compose(name)["services"]["multi2vec-clip"]
    assert "volumes" not in ours
    grace = float(env_of(final_stage(instructions(DOCKER / "Dockerfile")))["VECTORIZER_SHUTDOWN_GRACE"])
    stop = re.fullmatch(r"(\d+)s", ours["stop_grace_period"])
    assert stop and int(stop.group(1)) > grace


def test_the_model_dir_overlay_mounts_a_directory_where_the_service_reads_its_model():
    overlay = yaml.safe_load((DOCKER / MODEL_DIR_OVERLAY).read_text())["services"]["multi2vec-clip"]
    # the first of the directories the image lists, where the reference image keeps its model
    model_dir = env_of(final_stage(instructions(DOCKER / "Dockerfile")))["VECTORIZER_MODEL"].split(":")[0]
    assert model_dir == "/app/models"
    assert [v for v in overlay["volumes"] if v.endswith(f":{model_dir}:ro")] and len(overlay["volumes"]) == 1
    assert overlay["volumes"][0].startswith("${CLIP_MODEL_DIR:?")  # says which variable is missing


def test_gpu_compose_turns_cuda_on_and_reserves_a_gpu():
    ours = compose("docker-compose.gpu.yml")["services"]["multi2vec-clip"]
    assert ours["environment"]["ENABLE_CUDA"] in ("true", "1")
    devices = ours["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert "cu" in ours["build"]["args"]["TORCH_INDEX"].rsplit("/", 1)[-1]


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_passes_the_model_build_argument_through(name):
    """MODEL_ID reaches the build unset as an empty string, which the download script reads as its
    default; set, it picks another model."""
    args = compose(name)["services"]["multi2vec-clip"]["build"]["args"]
    assert args["MODEL_ID"] == "${MODEL_ID:-}"


# --- the image's Python install steps, run outside Docker ----------------------------------------------


def _torch_pin() -> str:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d.split("==", 1)[1] for d in dependencies if re.fullmatch(r"torch\s*==\s*[\w.]+", d)]
    assert len(pins) == 1, dependencies
    return pins[0].strip()


def _fake_torch_index(root: Path, version: str) -> str:
    """A wheel index holding one tiny wheel named torch (PyTorch's CPU index's kind of version, with a
    local label), standing in for the real 200 MB-2 GB wheel: what matters is whether pip keeps it."""
    project = root / "torch"
    project.mkdir(parents=True)
    wheel = project / f"torch-{version}-py3-none-any.whl"
    info = f"torch-{version}.dist-info"
    files = {
        "torch/__init__.py": f'__version__ = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    href = wheel.name.replace("+", "%2B")
    (project / "index.html").write_text(f'<html><body><a href="{href}">{wheel.name}</a></body></html>\n')
    return root.as_uri()


def _copy_into(sources: list[str], dest: Path, as_directory: bool) -> None:
    """Docker's COPY, for sources relative to the build context (the repository)."""
    for source in sources:
        path = REPO / source
        if path.is_dir():
            shutil.copytree(path, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        elif as_directory:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest / path.name)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest)


def run_build_stage(dockerfile: Path, tmp: Path, pip_options: list[str]) -> Path:
    """Run the RUN lines of the Dockerfile's `build` stage in order, outside Docker: the stage's
    filesystem is ``tmp/root``, its COPY lines copy from the repository, ARGs are set as Docker sets them
    (TORCH_INDEX: a local index with a stand-in torch wheel), and `python` is a bare interpreter (a fresh
    virtual environment: like the base image's, it has no torch). ``pip_options`` go to the last RUN
    line's package step. Returns where the Python environment was made: the path the final stage copies."""
    pairs = instructions(dockerfile)
    copies = [rest.split()[1:] for word, rest in final_stage(pairs) if word == "COPY" and "--from=build" in rest]
    assert copies, "the final stage copies nothing from the build stage"
    made = copies[0][0]
    root = tmp / "root"

    def inside(path: str) -> Path:
        return root / path.lstrip("/")

    base = tmp / "base-python"
    subprocess.run([sys.executable, "-m", "venv", str(base)], check=True)
    # the machine's pip settings stay (an index mirror, certificates), except those that would change
    # where packages go or add places to take torch from
    dropped = ("PYTHON", "VIRTUAL_ENV", "PIP_TARGET", "PIP_PREFIX", "PIP_USER", "PIP_FIND_LINKS", "PIP_EXTRA_INDEX")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(PATH=f"{base / 'bin'}:/usr/local/bin:/usr/bin:/bin", HOME=str(tmp), PIP_DISABLE_PIP_VERSION_CHECK="1")
    workdir = "/"
    runs: list[tuple[str, str]] = []
    first_from = next(i for i, (word, _) in enumerate(pairs) if word == "FROM")
    global_args = dict(rest.partition("=")[::2] for word, rest in pairs[:first_from] if word == "ARG")
    for word, rest in named_stage(pairs, "build")[1:]:
        if word == "ARG":  # a bare ARG takes the default of the global one (before the first FROM)
            name, has_default, default = rest.partition("=")
            env[name] = (default if has_default else global_args.get(name, "")).strip('"')
        elif word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
        elif word == "WORKDIR":
            workdir = os.path.join(workdir, rest)
            inside(workdir).mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *sources, dest = rest.split()
            target = dest if dest.startswith("/") else os.path.join(workdir, dest)
            _copy_into(sources, inside(target), dest.endswith("/") or len(sources) > 1)
        elif word == "RUN":
            runs.append((workdir, rest.replace(made, str(inside(made)))))
    env["TORCH_INDEX"] = _fake_torch_index(tmp / "index", f"{_torch_pin()}+cpu")
    assert runs, "the build stage runs nothing"
    for number, (directory, command) in enumerate(runs, 1):
        if number == len(runs):  # the options go to the package step
            command = re.sub(r"(install_python\.sh package \S+)", rf"\1 {' '.join(pip_options)}", command)
        done = subprocess.run(["sh", "-c", command], cwd=inside(directory), env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"RUN {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return inside(made)


def _pypi_reachable() -> bool:
    if os.environ.get("PIP_INDEX_URL"):
        return True
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def test_the_image_install_steps_resolve_torch_once(tmp_path):
    """The build stage's steps, with the last (the package) as a dry run whose report lists what pip
    would install on top of what the earlier steps installed: everything the package needs, but no
    second torch (which pip would take from PyPI: on Linux the CUDA build, also in the CPU image)."""
    if not _pypi_reachable():
        pytest.skip("the package's dependencies are resolved against PyPI, which is out of reach")
    report = tmp_path / "report.json"
    made = run_build_stage(DOCKER / "Dockerfile", tmp_path, ["--dry-run", "--report", str(report)])
    installs = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "clip-vectorizer" in installs and "transformers" in installs  # the package step resolved
    assert "torch" not in installs, f"torch resolved a second time: torch {installs.get('torch')}"
    kept = subprocess.run(
        [str(made / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('torch'))"],
        capture_output=True,
        text=True,
    )
    assert kept.stdout.strip() == f"{_torch_pin()}+cpu"  # the one torch is the index's
    # CLIP's BPE file, in the environment the final stage copies, where the final stage points the service
    bpe = made / "share" / "clip-tokenizer" / "bpe_simple_vocab_16e6.txt.gz"
    assert gzip.decompress(bpe.read_bytes()).decode().splitlines()[1] == "i n"  # CLIP's first merge
    setting = env_of(final_stage(instructions(DOCKER / "Dockerfile")))["VECTORIZER_CLIP_TOKENIZER"]
    assert setting == "/opt/venv/share/clip-tokenizer/bpe_simple_vocab_16e6.txt.gz" and made.name == "venv"


# --- the model download ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env,expected",
    [
        ({}, [("openai/clip-vit-base-patch32", "/m")]),  # the default build bakes a model in
        ({"MODEL_ID": ""}, [("openai/clip-vit-base-patch32", "/m")]),  # as compose passes it unset
        ({"MODEL_ID": "none"}, []),
        ({"MODEL_ID": "google/siglip-base-patch16-224"}, [("google/siglip-base-patch16-224", "/m")]),
        (
            {"CLIP_MODEL_NAME": "sentence-transformers/clip-ViT-B-32"},
            [("sentence-transformers/clip-ViT-B-32", "/m/clip"), ("sentence-transformers/clip-ViT-B-32", "/m/text")],
        ),
        ({"CLIP_MODEL_NAME": "c", "TEXT_MODEL_NAME": "t"}, [("c", "/m/clip"), ("t", "/m/text")]),
    ],
)
def test_download_script_downloads_what_the_build_arguments_name(monkeypatch, tmp_path, env, expected):
    module = download_script()
    calls = []
    monkeypatch.setattr(module, "download", lambda repo, target: calls.append((repo, target)))
    build_arguments(monkeypatch, **env)
    module.main(str(tmp_path / "m"))
    assert [(repo, target.replace(str(tmp_path), "")) for repo, target in calls] == expected


@pytest.mark.parametrize(
    "env",
    [
        {"CLIP_MODEL_NAME": "openai/clip-vit-base-patch32", "TEXT_MODEL_NAME": "openai/clip-vit-base-patch32"},
        {"CLIP_MODEL_NAME": "openai/clip-vit-base-patch32"},  # the text model defaults to the same
        {"CLIP_MODEL_NAME": "facebook/metaclip-b32-400m", "TEXT_MODEL_NAME": "facebook/metaclip-b32-400m"},
        {"CLIP_MODEL_NAME": "org/a-clip", "CLIP_MODEL_TYPE": "OpenAI", "TRUST_REMOTE_CODE": "true"},
    ],
)
def test_an_openai_clip_build_argument_writes_the_reference_folders_the_service_serves(
    monkeypatch, tmp_path, tiny_model, env
):
    """The reference's download.py saves these as models/openai_clip (config, weights) and
    models/openai_clip_processor (tokenizer, processor); our build once put two copies in clip/ and
    text/, which the service refused."""
    from vectorizer_module.models.loading import detect

    module = download_script()
    names = sorted(p.name for p in tiny_model.iterdir())

    def download(repo, target, config_types):  # what download() leaves: the chosen files of a transformers CLIP
        shutil.copytree(tiny_model, target)
        return names

    monkeypatch.setattr(module, "download", download)
    build_arguments(monkeypatch, **env)
    models = tmp_path / "models"
    module.main(str(models))
    assert sorted(p.name for p in models.iterdir()) == ["openai_clip", "openai_clip_processor", "trust_remote_code"]
    weights = sorted(p.name for p in (models / "openai_clip").iterdir())
    assert "config.json" in weights and not any(n.startswith(("tokenizer", "vocab", "merges")) for n in weights)
    assert (models / "trust_remote_code").read_text() == env.get("TRUST_REMOTE_CODE", "False")
    source = detect(models)
    assert (source.layout, source.text_weights.name, source.tokenizer.name) == (
        "reference-image",
        "openai_clip",
        "openai_clip_processor",
    )


def hub_cache_path(cache_dir: str, repo: str, name: str) -> Path:
    """Where huggingface_hub's cache keeps ``name`` of ``repo`` (revision ``rev1``, named by refs/main),
    its folders made: what a fake hf_hub_download writes to."""
    folder = Path(cache_dir) / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("rev1")
    (folder / "snapshots" / "rev1").mkdir(parents=True, exist_ok=True)
    return folder / "snapshots" / "rev1" / name


def test_a_siglip_build_argument_writes_the_reference_folders_the_service_serves(monkeypatch, tmp_path):
    """SIGLIP_MODEL_NAME as the reference's download.py saves it: models/siglip (config, weights), the
    processor in a hub cache inside it, models/model_name. The fake hub download below lays files out
    as huggingface_hub's cache does (models--ORG--NAME, refs/main, snapshots/REV)."""
    from clip_training.random_models.siglip import save_random_model
    from vectorizer_module.models.loading import detect

    module = download_script()
    hub = save_random_model(tmp_path / "hub", seed=1)
    names = sorted(p.name for p in hub.iterdir())

    def download(repo, target):
        shutil.copytree(hub, target)
        return names

    def hf_hub_download(repo, name, cache_dir):
        return shutil.copy(hub / name, hub_cache_path(cache_dir, repo, name))

    monkeypatch.setattr(module, "download", download)
    monkeypatch.setattr(module, "hf_hub_download", hf_hub_download)
    build_arguments(monkeypatch, SIGLIP_MODEL_NAME="google/siglip-base-patch16-224")
    models = tmp_path / "models"
    module.main(str(models))
    assert sorted(p.name for p in models.iterdir()) == ["model_name", "siglip", "trust_remote_code"]
    assert (models / "model_name").read_text() == "google/siglip-base-patch16-224"
    assert sorted(p.name for p in (models / "siglip").iterdir()) == [
        "config.json",
        "model.safetensors",
        "models--google--siglip-base-patch16-224",
    ]
    source = detect(models)
    assert (source.family, source.tokenizer.parent.name) == ("siglip-reference", "snapshots")


def _openclip_build(monkeypatch, tmp_path, name: str, tag: str):
    """download_model.main with OPEN_CLIP_MODEL_NAME / OPEN_CLIP_PRETRAINED, open_clip 2.29.0's registry
    (the reference's pin, from .reference-env) and a fake hub whose repositories hold only the .bin
    weights (the hub answers 404 for the safetensors name open_clip tries first); returns the models/
    folder and the (repository, file) pairs asked for."""
    from tests.isolated_envs import REFERENCE_ENV

    if not (REFERENCE_ENV / "open_clip").is_dir():
        pytest.skip(f"open_clip 2.29.0 is not in {REFERENCE_ENV}: run scripts/install.sh")
    module = download_script()
    registry = module.open_clip_registry
    monkeypatch.setattr(module, "open_clip_registry", lambda package=None: registry(REFERENCE_ENV / "open_clip"))
    asked = []

    def hf_hub_download(repo, name, cache_dir):
        asked.append((repo, name))
        if name.endswith(".safetensors"):
            raise FileNotFoundError(f"404: {repo} has no {name}")
        hub_cache_path(cache_dir, repo, name).write_bytes(b"weights")

    monkeypatch.setattr(module, "hf_hub_download", hf_hub_download)
    build_arguments(monkeypatch, OPEN_CLIP_MODEL_NAME=name, OPEN_CLIP_PRETRAINED=tag)
    models = tmp_path / "models"
    module.main(str(models))
    return models, asked


def test_an_openclip_build_argument_writes_the_reference_folder_the_service_detects(monkeypatch, tmp_path):
    from tests.isolated_envs import REFERENCE_ENV
    from vectorizer_module.models.loading import detect

    models, asked = _openclip_build(monkeypatch, tmp_path, "ViT-B-32", "laion2b_s34b_b79k")
    repo = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert asked == [(repo, "open_clip_model.safetensors"), (repo, "open_clip_pytorch_model.bin")]
    assert sorted(p.name for p in models.iterdir()) == ["openclip", "trust_remote_code"]
    config = json.loads((models / "openclip" / "config.json").read_text())
    architecture = json.loads((REFERENCE_ENV / "open_clip" / "model_configs" / "ViT-B-32.json").read_text())
    assert config == {
        "model_name": "ViT-B-32",
        "pretrained": "laion2b_s34b_b79k",
        "model_config": architecture,
        "cache_dir": "./models/openclip",
    }
    source = detect(models, clip_tokenizer=REFERENCE_ENV / "open_clip")
    assert (source.layout, source.family) == ("reference-image", "openclip")


def test_an_openclip_pair_open_clip_does_not_know_stops_the_build(monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match="model: ViT-B-32 pretrained: laion2b_s34b_b79k"):  # the pairs listed
        _openclip_build(monkeypatch, tmp_path, "ViT-B-32", "laion5b")
    assert not (tmp_path / "models" / "openclip").exists()
    monkeypatch.delenv("OPEN_CLIP_PRETRAINED")
    with pytest.raises(SystemExit, match="go together"):
        download_script().main(str(tmp_path / "other"))


def test_a_colpali_build_argument_writes_the_reference_folders_and_meta_the_service_serves(monkeypatch, tmp_path):
    """download_model.main with COLPALI_ENGINE_MODEL_NAME against a fake hub holding the files of a tiny
    ModernVBERT that colpali-engine built and the reference's steps embedded: the folders our build writes
    are served with the reference's vectors, and their config.json (our /meta) is the reference's own,
    byte for byte, made by colpali-engine's config class under transformers 4.57.3 as in the image."""
    from tests import media
    from tests.helpers import make_engine
    from tests.isolated_envs import OPENCLIP_ENV, REFERENCE_ENV, build_with_colpali_engine
    from tests.reference import assert_parity
    from vectorizer_module.models.files import hub_snapshot, hub_snapshots
    from vectorizer_module.models.loading import detect

    repo = "ModernVBERT/bimodernvbert-tiny"
    scratch = tmp_path / "reference"
    scratch.mkdir()
    image = scratch / "image.png"
    image.write_bytes(media.encode(media.photo(70, 40, seed=5), "PNG"))
    reference = build_with_colpali_engine(scratch, repo, ["a photo of a cat"], [str(image)])
    hub = {
        repo: hub_snapshot(scratch / "models" / "colpali_engine_model", repo),
        **hub_snapshots(scratch / "hf-cache"),
    }
    processor_files = hub_snapshot(scratch / "models" / "colpali_engine_processor", repo)
    module = download_script()

    def snapshot_download(name, cache_dir, allow_patterns):
        source = processor_files if cache_dir.endswith("colpali_engine_processor") else hub[name]
        for file in source.iterdir():
            if any(Path(file.name).match(pattern) for pattern in allow_patterns):
                shutil.copy(file, hub_cache_path(cache_dir, name, file.name))
        return str(hub_cache_path(cache_dir, name, "x").parent)

    def hf_hub_download(name, filename, cache_dir):
        return shutil.copy(hub[name] / filename, hub_cache_path(cache_dir, name, filename))

    monkeypatch.setattr(module, "snapshot_download", snapshot_download)
    monkeypatch.setattr(module, "hf_hub_download", hf_hub_download)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(map(str, (REFERENCE_ENV, OPENCLIP_ENV))))  # the stage's env
    build_arguments(monkeypatch, COLPALI_ENGINE_MODEL_NAME=repo)
    models = tmp_path / "models"
    module.main(str(models))
    assert sorted(p.name for p in models.iterdir()) == [
        "colpali_engine_model",
        "colpali_engine_processor",
        "model_name",
        "trust_remote_code",
    ]
    written = models / "colpali_engine_model" / "config.json"
    assert json.loads(written.read_text()) == json.loads((scratch / "models" / written.relative_to(models)).read_text())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))  # the encoders' configs come with the folders
    engine = make_engine(models, cache_size=0)
    texts, images = engine.embed(["a photo of a cat"], [image.read_bytes()])
    assert_parity(texts, reference["texts"])
    assert_parity(images, reference["images"])
    assert detect(models).family == "modernvbert"

    # the reference's own volume, whose encoders' configs stayed in the reference image: the image's cache
    module.download_colpali_encoders(str(tmp_path / "image-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "image-cache"))
    texts, images = make_engine(scratch / "models", cache_size=0).embed(["a photo of a cat"], [image.read_bytes()])
    assert_parity(texts, reference["texts"])
    assert_parity(images, reference["images"])


def test_the_image_bakes_colpalis_encoder_configs_where_the_service_reads_them(monkeypatch, tmp_path):
    """The model stage puts them in the folder its second argument names (best effort: a build that cannot
    reach them goes on); the final stage copies that folder and points HF_HUB_CACHE at it."""
    pairs = instructions(DOCKER / "Dockerfile")
    fetch = next(rest for word, rest in named_stage(pairs, "model") if word == "RUN" and "fetch_model.sh" in rest)
    cache = fetch.split()[-1]
    stage = final_stage(pairs)
    copied = [rest.split()[1:] for word, rest in stage if word == "COPY" and rest.startswith("--from=model ")]
    assert [cache, env_of(stage)["HF_HUB_CACHE"]] in copied
    module = download_script()
    fetched = []

    def hf_hub_download(repo, name, cache_dir):
        if repo.startswith("google/"):
            raise OSError("the hub cannot be reached")
        fetched.append(repo)
        return hub_cache_path(cache_dir, repo, name).write_text("{}")

    monkeypatch.setattr(module, "hf_hub_download", hf_hub_download)
    module.download_colpali_encoders(str(tmp_path / "cache"))
    assert fetched == ["jhu-clsp/ettin-encoder-150m"]
    assert (tmp_path / "cache" / "models--jhu-clsp--ettin-encoder-150m" / "refs" / "main").is_file()


def test_a_colpali_build_argument_goes_alone(monkeypatch, tmp_path):
    build_arguments(monkeypatch, COLPALI_ENGINE_MODEL_NAME="some/model", SIGLIP_MODEL_NAME="other/model")
    with pytest.raises(SystemExit, match="not both"):
        download_script().main(str(tmp_path / "m"))
    for word, rest in instructions(DOCKER / "Dockerfile"):  # the Dockerfile takes it, so the build sees it
        if word == "ARG" and rest.split("=")[0] == "COLPALI_ENGINE_MODEL_NAME":
            break
    else:
        pytest.fail("the Dockerfile has no ARG COLPALI_ENGINE_MODEL_NAME")


@pytest.mark.parametrize(
    "env,message",
    [
        # both kinds of model argument
        (
            {"MODEL_ID": "openai/clip-vit-base-patch32", "CLIP_MODEL_NAME": "sentence-transformers/clip-ViT-B-32"},
            "not both",
        ),
        # an OpenAI model with another text model, which the reference refuses too
        (
            {"CLIP_MODEL_NAME": "openai/clip-vit-base-patch32", "TEXT_MODEL_NAME": "sentence-transformers/x"},
            "must be the same",
        ),
    ],
)
def test_download_script_refuses_arguments_that_name_no_one_model(monkeypatch, tmp_path, env, message):
    module = download_script()
    build_arguments(monkeypatch, **env)
    with pytest.raises(SystemExit, match=message):
        module.main(str(tmp_path))


# File names of public Hugging Face repositories, as the hub lists them (written down by hand: the hub is
# not reachable from the test machines), with the small JSON files the choice reads.
CLIP_ST_MODULES = [{"idx": 0, "name": "0", "path": "0_CLIPModel", "type": "sentence_transformers.models.CLIPModel"}]
MULTILINGUAL_MODULES = [
    {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
]
HF_CLIP_FILES = [
    "config.json",
    "merges.txt",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
]
LISTINGS = {
    "openai/clip-vit-base-patch32": (
        [".gitattributes", "README.md", "flax_model.msgpack", "model.safetensors", "pytorch_model.bin"]
        + ["tf_model.h5", *HF_CLIP_FILES],
        {"config.json": {"model_type": "clip"}},
        sorted([*HF_CLIP_FILES, "model.safetensors"]),
    ),
    # transformers and OpenCLIP copies side by side: served as transformers CLIP, one copy only
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K": (
        [".gitattributes", "README.md", "model.safetensors", "pytorch_model.bin", "open_clip_config.json"]
        + ["open_clip_model.safetensors", "open_clip_pytorch_model.bin", *HF_CLIP_FILES],
        {"config.json": {"model_type": "clip"}},
        sorted([*HF_CLIP_FILES, "model.safetensors"]),
    ),
    "google/siglip-base-patch16-224": (
        [".gitattributes", "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
        + ["special_tokens_map.json", "spiece.model", "tokenizer_config.json"],
        {"config.json": {"model_type": "siglip"}},
        ["config.json", "model.safetensors", "preprocessor_config.json", "special_tokens_map.json"]
        + ["spiece.model", "tokenizer_config.json"],
    ),
    # OpenCLIP weights beside timm's (its config.json has no model_type): OpenCLIP's, without a tokenizer
    "timm/vit_base_patch16_clip_224.openai": (
        [".gitattributes", "README.md", "config.json", "model.safetensors", "open_clip_config.json"]
        + ["open_clip_model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin"],
        {"config.json": {"architecture": "vit_base_patch16_clip_224", "num_classes": 512}},
        ["config.json", "open_clip_config.json", "open_clip_model.safetensors"],
    ),
    "sentence-transformers/clip-ViT-B-32": (
        [".gitattributes", "README.md", "modules.json", "0_CLIPModel/model.safetensors"]
        + ["0_CLIPModel/pytorch_model.bin", *(f"0_CLIPModel/{f}" for f in HF_CLIP_FILES if f != "tokenizer.json")],
        {"modules.json": CLIP_ST_MODULES},
        sorted(
            ["modules.json", "0_CLIPModel/model.safetensors"]
            + [f"0_CLIPModel/{f}" for f in HF_CLIP_FILES if f != "tokenizer.json"]
        ),
    ),
    "sentence-transformers/clip-ViT-B-32-multilingual-v1": (
        [".gitattributes", "README.md", "modules.json", "1_Pooling/config.json", "2_Dense/config.json"]
        + ["2_Dense/pytorch_model.bin", "2_Dense/model.safetensors"]
        + [f"0_Transformer/{f}" for f in ("config.json", "pytorch_model.bin", "model.safetensors")]
        + [f"0_Transformer/{f}" for f in ("sentence_bert_config.json", "special_tokens_map.json")]
        + [f"0_Transformer/{f}" for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")],
        {"modules.json": MULTILINGUAL_MODULES},
        ["0_Transformer/config.json", "0_Transformer/model.safetensors", "0_Transformer/sentence_bert_config.json"]
        + ["0_Transformer/special_tokens_map.json", "0_Transformer/tokenizer.json"]
        + ["0_Transformer/tokenizer_config.json", "0_Transformer/vocab.txt", "1_Pooling/config.json"]
        + ["2_Dense/config.json", "2_Dense/model.safetensors", "modules.json"],
    ),
}


@pytest.mark.parametrize("repo", sorted(LISTINGS))
def test_the_download_takes_one_weight_format_and_the_files_the_layout_reads(repo):
    names, small_files, expected = LISTINGS[repo]
    read = []

    def read_json(name):
        read.append(name)
        return small_files[name]

    chosen = download_script().choose_files(repo, names, read_json)
    assert chosen == expected
    assert set(read) <= set(small_files)


def test_sharded_weights_come_with_their_index_and_exported_copies_stay_behind():
    """Synthetic listings: a sharded checkpoint in both formats, and a sentence-transformers repository
    with ONNX and OpenVINO exports and a CLIP module in its root (sentence-transformers 6)."""
    module = download_script()
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]
    bins = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json"]
    names = ["config.json", "preprocessor_config.json", "tokenizer.json", *shards, *bins]
    config = {"config.json": {"model_type": "clip"}}
    assert module.choose_files("r", names, config.get) == sorted(
        ["config.json", "preprocessor_config.json", "tokenizer.json", *shards]
    )
    assert module.choose_files("r", [n for n in names if n not in shards], config.get) == sorted(
        ["config.json", "preprocessor_config.json", "tokenizer.json", *bins]
    )
    st = ["modules.json", "config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"]
    st += ["onnx/model.onnx", "onnx/config.json", "openvino/openvino_model.xml", "openvino/openvino_model.bin"]
    modules = {"modules.json": [{"path": "", "type": "sentence_transformers.models.CLIPModel"}]}
    assert module.choose_files("r", st, modules.get) == sorted(st[:5])


@pytest.mark.parametrize(
    "names,small_files,message",
    [
        (["config.json", "tf_model.h5", "tokenizer.json"], {"config.json": {"model_type": "clip"}}, "no weights"),
        (["config.json", "model.safetensors"], {"config.json": {"model_type": "bert"}}, "not a model the service"),
        (["open_clip_config.json", "open_clip_model.pt"], {}, "no weights"),
        (["modules.json", "0_CLIPModel/tf_model.h5"], {"modules.json": CLIP_ST_MODULES}, "folder 0_CLIPModel/"),
    ],
)
def test_a_repository_without_a_served_layout_fails_the_build_saying_why(names, small_files, message):
    module = download_script()
    with pytest.raises(module.ModelRepoError, match=message):
        module.choose_files("some/repo", names, small_files.get)


def test_download_fetches_only_the_chosen_files_and_clips_tokenizer_for_an_openclip_repository(monkeypatch, tmp_path):
    module = download_script()
    names, small_files, expected = LISTINGS["timm/vit_base_patch16_clip_224.openai"]
    calls = []
    monkeypatch.setattr(module, "repo_files", lambda repo: names)
    monkeypatch.setattr(module, "fetch_json", lambda repo, name, target: small_files[name])
    monkeypatch.setattr(
        module, "snapshot_download", lambda repo, local_dir, allow_patterns: calls.append((repo, allow_patterns))
    )
    (tmp_path / ".cache").mkdir()  # huggingface_hub's bookkeeping, left out of the image
    module.download("timm/vit_base_patch16_clip_224.openai", str(tmp_path))
    assert calls == [
        ("timm/vit_base_patch16_clip_224.openai", expected),
        ("openai/clip-vit-base-patch32", ["vocab.json", "merges.txt"]),
    ]
    assert not (tmp_path / ".cache").exists()
    calls.clear()  # OpenCLIP's own BPE file is a tokenizer: nothing more
    monkeypatch.setattr(module, "repo_files", lambda repo: [*names, "bpe_simple_vocab_16e6.txt.gz"])
    module.download("timm/vit_base_patch16_clip_224.openai", str(tmp_path))
    assert calls == [("timm/vit_base_patch16_clip_224.openai", sorted([*expected, "bpe_simple_vocab_16e6.txt.gz"]))]


# --- stages, build context, the model stage -------------------------------------------------------------


def test_every_stage_starts_from_the_base_image_argument():
    stages = [rest for word, rest in instructions(DOCKER / "Dockerfile") if word == "FROM"]
    assert len(stages) == 3
    assert all(rest.split()[0] == "${BASE_IMAGE}" for rest in stages), stages


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as Docker reads it: (re-include?, pattern), where * and ? stay within a path
    segment and ** spans segments; the last pattern matching a path or one of its parents decides."""
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        text = line.lstrip("!").strip("/")
        regex = re.escape(text).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append((negated, re.compile(regex + "$")))
    return patterns


def build_context() -> list[Path]:
    """The files `docker build .` sends from this checkout (files git keeps, .dockerignore applied)."""
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    patterns = _ignore_patterns()
    sent = []
    for name in tracked.splitlines():
        parts = name.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for negated, pattern in patterns:
            if any(pattern.match(c) for c in candidates):
                excluded = not negated
        if not excluded and (REPO / name).is_file():
            sent.append(Path(name))
    return sent


def test_the_build_context_is_small_and_holds_everything_the_dockerfile_copies():
    context = build_context()
    size = sum((REPO / p).stat().st_size for p in context)
    assert size < 5 * 1024 * 1024, f"{size / 1e6:.1f} MB"
    names = {str(p) for p in context}
    assert not any(n.startswith((".git/", "tests/", "docs/", ".ci/")) for n in names)
    assert "vectorizer_module/default_model/model.safetensors" not in names
    for word, rest in instructions(DOCKER / "Dockerfile"):
        if word == "COPY" and "--from=" not in rest:
            for source in rest.split()[:-1]:
                assert any(n == source.rstrip("/") or n.startswith(source.rstrip("/") + "/") for n in names), source


def _fetch_model(tmp_path: Path, model_id: str, local: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODEL_ID": model_id, "LOCAL_MODEL_DIR": str(local)}
    return subprocess.run(
        ["sh", str(DOCKER / "fetch_model.sh"), str(tmp_path / "models"), str(tmp_path / "hf-cache")],
        env=env,
        capture_output=True,
        text=True,
    )


def test_the_model_stage_bakes_a_local_directory_or_nothing_and_refuses_an_empty_one(tmp_path):
    local = tmp_path / "local"
    shutil.copytree(DOCKER / "model", local)  # as the context holds it: README and .gitignore only
    refused = _fetch_model(tmp_path, "local", local)
    assert refused.returncode != 0 and "holds no model" in refused.stderr
    (local / "config.json").write_text("{}")
    (local / "sub").mkdir()
    (local / "sub" / "model.safetensors").write_bytes(b"weights")
    (local / "sub" / "model.safetensors").chmod(0o600)  # as safetensors writes it
    (local / "sub").chmod(0o700)
    assert _fetch_model(tmp_path, "local", local).returncode == 0
    baked = sorted(str(p.relative_to(tmp_path / "models")) for p in (tmp_path / "models").rglob("*"))
    assert baked == ["config.json", "sub", "sub/model.safetensors"]
    # readable by the image's unprivileged user, whoever wrote them
    assert (tmp_path / "models" / "sub" / "model.safetensors").stat().st_mode & 0o444 == 0o444
    assert (tmp_path / "models" / "sub").stat().st_mode & 0o555 == 0o555
    shutil.rmtree(tmp_path / "models")
    assert _fetch_model(tmp_path, "none", local).returncode == 0
    assert list((tmp_path / "models").iterdir()) == []
