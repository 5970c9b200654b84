"""Bake a Hugging Face model into the image at build time (the build stage has internet, the service not).

MODEL_ID: a transformers CLIP or SigLIP repository, or an OpenCLIP one, downloaded into TARGET itself;
unset or empty: openai/clip-vit-base-patch32; ``none``: nothing is downloaded (mount a model at run
time instead). An OpenCLIP repository without tokenizer files gets CLIP's (OpenCLIP's standard models
use CLIP's BPE). CLIP_MODEL_NAME [+ TEXT_MODEL_NAME, CLIP_MODEL_TYPE, TRUST_REMOTE_CODE]: the reference
multi2vec-clip image's build arguments, written as its download.py writes them: an OpenAI CLIP
(``openai/...``, ``facebook/metaclip...`` or CLIP_MODEL_TYPE=openai) into TARGET/openai_clip (config and
weights) and TARGET/openai_clip_processor (tokenizer and image processor), any other pair as two
sentence-transformers repositories into TARGET/clip and TARGET/text; SIGLIP_MODEL_NAME into TARGET/siglip
(config, weights, and the processor in a hub cache inside it) and TARGET/model_name; OPEN_CLIP_MODEL_NAME +
OPEN_CLIP_PRETRAINED into TARGET/openclip (the pair checked against open_clip's registry, the weights in a
hub cache there, config.json naming the pair and its architecture: open_clip 2.29.0's, the reference's
pin, read from the package without importing it, which would need torch); COLPALI_ENGINE_MODEL_NAME into
TARGET/colpali_engine_model and TARGET/colpali_engine_processor (hub caches of the repository, the first
with its encoders' configs and the config.json the reference writes, made by colpali-engine's own config
class under the reference's transformers, see colpali_model_config) and TARGET/model_name; and
TARGET/trust_remote_code.

Only the files the served layout reads are downloaded, not every copy a repository holds: the small
configuration and tokenizer files, and one weight format per folder (safetensors where the repository
has it, else PyTorch's .bin), never TensorFlow, Flax, ONNX or OpenVINO copies. Which layout a repository
is served as is decided as the service decides it (vectorizer_module/models/loading.py): modules.json
makes it sentence-transformers, a config.json of a CLIP or SigLIP model makes it transformers, and
open_clip_config.json otherwise makes it OpenCLIP.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, hf_hub_download, snapshot_download

DEFAULT_MODEL_ID = "openai/clip-vit-base-patch32"
NO_MODEL = "none"
CLIP_TOKENIZER_REPO = "openai/clip-vit-base-patch32"
CLIP_TOKENIZER_FILES = ["vocab.json", "merges.txt"]

# CLIP_MODEL_NAME prefixes the reference's download.py saves in its openai_clip layout (CLIP_MODEL_TYPE=openai
# does too), MetaCLIP 2 (facebook/metaclip-2-*, model_type metaclip_2) included: see metaclip2_as_clip
OPENAI_LAYOUT_PREFIXES = ("openai/", "facebook/metaclip")
# colpali-engine 0.3.13's default encoders: its config class reads their configs even for another model's
COLPALI_DEFAULT_ENCODERS = ("jhu-clsp/ettin-encoder-150m", "google/siglip2-base-patch16-512")
COLPALI_MODEL_FILES = ["config.json", "*.safetensors", "*.safetensors.index.json"]
COLPALI_PROCESSOR_FILES = [
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
]
# what the reference's download.py writes as model_config: model.config.to_diff_dict(), computed by
# colpali-engine's ModernVBertConfig under transformers 4.57.3 (installed in this stage's environment for a
# ColPali build, fetch_model.sh), its module loaded by path: the package's __init__ would import torch
COLPALI_DIFF = """
import importlib.util, json, os, sys
folder = importlib.util.find_spec("colpali_engine").submodule_search_locations[0]
path = os.path.join(folder, "models", "modernvbert", "configuration_modernvbert.py")
spec = importlib.util.spec_from_file_location("configuration_modernvbert", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(module.ModernVBertConfig.from_pretrained(sys.argv[1]).to_diff_dict()))
"""
# model_type values the service reads from a transformers config.json (CLIP, SigLIP, SigLIP 2 NaFlex)
SERVED_CONFIG_TYPES = frozenset({"clip", "siglip", "siglip2"})
# ... and those the openai_clip layout also takes, saved as a CLIP (see metaclip2_as_clip)
OPENAI_LAYOUT_CONFIG_TYPES = SERVED_CONFIG_TYPES | {"metaclip_2"}
# One weight format per folder, the first the folder has: a single file, or an index and its shards.
TRANSFORMERS_WEIGHTS = (
    ("model.safetensors", "model.safetensors.index.json", re.compile(r"model-\d+-of-\d+\.safetensors")),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", re.compile(r"pytorch_model-\d+-of-\d+\.bin")),
)
# vectorizer_module/models/openclip.py's WEIGHT_NAMES, in the order it prefers them
OPENCLIP_WEIGHTS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)
# configuration, tokenizer and processor files: JSON, vocab.txt/merges.txt, sentencepiece models, and
# OpenCLIP's own BPE file
SUPPORT_SUFFIXES = (".json", ".txt", ".model", ".txt.gz")
# files that hold weights of some format: a folder with some of these but none we can load is refused
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot", ".gguf")


class ModelRepoError(RuntimeError):
    """The repository holds no layout the service serves."""


def _in_folder(names: Iterable[str], folder: str) -> list[str]:
    """The names directly in ``folder`` ("" is the repository's root), without the folder prefix."""
    prefix = f"{folder}/" if folder else ""
    return sorted(n[len(prefix) :] for n in names if n.startswith(prefix) and "/" not in n[len(prefix) :])


def _transformers_weights(files: list[str]) -> list[str]:
    for single, index, shard in TRANSFORMERS_WEIGHTS:
        if single in files:
            return [single]
        if index in files:
            return [index] + [f for f in files if shard.fullmatch(f)]
    return []


def _openclip_weights(files: list[str]) -> list[str]:
    return next(([name] for name in OPENCLIP_WEIGHTS if name in files), [])


def _support(files: list[str]) -> list[str]:
    return [f for f in files if f.endswith(SUPPORT_SUFFIXES) and not f.endswith(".index.json")]


def _folder(
    names: Iterable[str], folder: str, weights: Callable[[list[str]], list[str]], repo: str, required: bool = False
) -> list[str]:
    """The support files and the one weight format of ``folder``; ModelRepoError if it holds weights
    only in formats the service does not load, or none where they are ``required``."""
    files = _in_folder(names, folder)
    chosen = weights(files)
    if not chosen and (required or any(f.endswith(WEIGHT_SUFFIXES) for f in files)):
        where = f"folder {folder}/" if folder else "the root"
        raise ModelRepoError(
            f"{repo}: {where} holds no weights in a format the service loads (model.safetensors or "
            f"pytorch_model.bin, or OpenCLIP's {' or '.join(OPENCLIP_WEIGHTS)}); it holds: {', '.join(files)}"
        )
    prefix = f"{folder}/" if folder else ""
    return [prefix + f for f in sorted(_support(files) + chosen)]


def choose_files(
    repo: str,
    names: Iterable[str],
    read_json: Callable[[str], Any],
    config_types: frozenset[str] = SERVED_CONFIG_TYPES,
) -> list[str]:
    """The files of ``repo`` (listed in ``names``) that its served layout needs, in the order the
    service looks for layouts. ``read_json(name)`` returns a small JSON file of the repository
    (modules.json, config.json), read only where the choice depends on it; ``config_types``: the
    transformers model types taken."""
    names = sorted(set(names))
    if "modules.json" in names:  # sentence-transformers: the root and each module's folder
        modules = read_json("modules.json")
        modules = modules if isinstance(modules, list) else []
        folders = {""} | {str(m.get("path", "")).strip("/") for m in modules if isinstance(m, dict)}
        return sorted(f for folder in sorted(folders) for f in _folder(names, folder, _transformers_weights, repo))
    config = read_json("config.json") if "config.json" in names else None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    root = _in_folder(names, "")
    has_openclip = "open_clip_config.json" in root
    # transformers CLIP or SigLIP (OpenCLIP's copy of the weights, if any, left out); a CLIP config.json
    # without transformers weights beside OpenCLIP's files is served as OpenCLIP, as the service does
    if model_type in config_types and (_transformers_weights(root) or not has_openclip):
        chosen = _folder(names, "", _transformers_weights, repo, required=True)
        return [f for f in chosen if not f.startswith("open_clip_")]
    if has_openclip:  # OpenCLIP; a config.json here may be another library's (timm's)
        return _folder(names, "", _openclip_weights, repo, required=True)
    raise ModelRepoError(
        f"{repo} is not a model the service serves: it needs modules.json (sentence-transformers), a "
        f"config.json with model_type {' or '.join(sorted(config_types))} (config.json says "
        f"{model_type!r}), or open_clip_config.json; it holds: {', '.join(root)}"
    )


def needs_clip_tokenizer(files: Iterable[str]) -> bool:
    """An OpenCLIP choice with neither tokenizer files nor OpenCLIP's BPE file."""
    names = set(files)
    return (
        "open_clip_config.json" in names
        and "tokenizer.json" not in names
        and not {"vocab.json", "merges.txt"} <= names
        and "bpe_simple_vocab_16e6.txt.gz" not in names
    )


def repo_files(repo: str) -> list[str]:
    return HfApi().list_repo_files(repo)


def fetch_json(repo: str, name: str, target: str) -> Any:
    return json.loads(Path(hf_hub_download(repo, name, local_dir=target)).read_text(encoding="utf-8"))


def download(repo: str, target: str, config_types: frozenset[str] = SERVED_CONFIG_TYPES) -> list[str]:
    """Download what ``repo``'s served layout needs into ``target``; the files chosen."""
    files = choose_files(repo, repo_files(repo), lambda name: fetch_json(repo, name, target), config_types)
    snapshot_download(repo, local_dir=target, allow_patterns=files)
    if needs_clip_tokenizer(files):
        snapshot_download(CLIP_TOKENIZER_REPO, local_dir=target, allow_patterns=CLIP_TOKENIZER_FILES)
        files = files + CLIP_TOKENIZER_FILES
    shutil.rmtree(Path(target) / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
    print(f"{repo} -> {target}: {', '.join(files)}", flush=True)
    return files


def openai_layout(clip_name: str, clip_type: str) -> bool:
    """Whether the reference image's download.py (1.5.0) saves CLIP_MODEL_NAME as a transformers CLIP
    (models/openai_clip + models/openai_clip_processor) rather than two sentence-transformers models."""
    return clip_name.startswith(OPENAI_LAYOUT_PREFIXES) or clip_type.strip().lower() == "openai"


def metaclip2_as_clip(config: dict[str, Any]) -> dict[str, Any]:
    """A MetaCLIP 2 config.json as the reference's download.py saves it: it loads the checkpoint with
    ``CLIPModel`` (transformers 4.57.3), so the fields are read as a CLIPConfig's (those MetaCLIP 2's file
    leaves out take CLIP's defaults, here as there), the tensors keep their names, and it saves a CLIP.
    tests/unit/service/models/test_metaclip2.py serves both folders and compares them."""
    clip = dict(config, model_type="clip", architectures=["CLIPModel"])
    for part, model_type in (("text_config", "clip_text_model"), ("vision_config", "clip_vision_model")):
        clip[part] = dict(config.get(part) or {}, model_type=model_type)
    return clip


def download_openai_layout(repo: str, models: str) -> None:
    """The reference's openai_clip folder (config.json and the weights) and openai_clip_processor folder
    (the tokenizer and image-processor files), from one transformers CLIP or MetaCLIP 2 repository."""
    weights_dir, processor_dir = Path(models, "openai_clip"), Path(models, "openai_clip_processor")
    files = download(repo, str(weights_dir), OPENAI_LAYOUT_CONFIG_TYPES)
    config = json.loads((weights_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") == "metaclip_2":
        (weights_dir / "config.json").write_text(json.dumps(metaclip2_as_clip(config), indent=2))
    processor_dir.mkdir(parents=True, exist_ok=True)
    for name in _support(files):
        if name != "config.json":
            shutil.move(str(weights_dir / name), str(processor_dir / name))


def download_siglip_layout(repo: str, models: str) -> None:
    """The reference's SigLIP folders: models/siglip with the config and weights (what
    ``SiglipModel.save_pretrained`` writes), the processor files in a hub cache inside it (what
    ``AutoProcessor.from_pretrained(repo, cache_dir=models/siglip)`` leaves: ``models--ORG--NAME`` with
    ``refs/main`` and ``snapshots/REV``), and models/model_name naming the repository."""
    siglip = Path(models, "siglip")
    files = download(repo, str(siglip))
    for name in _support(files):
        hf_hub_download(repo, name, cache_dir=str(siglip))
        if name != "config.json":
            (siglip / name).unlink()
    Path(models, "model_name").write_text(repo)


def colpali_model_config(snapshot: Path, cache: Path) -> dict[str, Any]:
    """``to_diff_dict()`` of the ModernVBERT config in ``snapshot``, as colpali-engine computes it (in a
    process of its own, offline, the encoders' configs read from ``cache``)."""
    import subprocess

    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", COLPALI_DIFF, str(snapshot)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"COLPALI_ENGINE_MODEL_NAME: colpali-engine could not read the model's config: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def download_colpali_layout(repo: str, models: str) -> None:
    """The reference's ColPali folders: models/colpali_engine_model and models/colpali_engine_processor, hub
    caches of ``repo`` (what its ``from_pretrained(repo, cache_dir=...)`` leaves), the first also holding the
    configs of the encoders the model names (the reference reads them from its image's own cache; here the
    volume carries them) and, on top, the config.json its download.py writes; models/model_name."""
    model_cache, processor_cache = Path(models, "colpali_engine_model"), Path(models, "colpali_engine_processor")
    snapshot = Path(snapshot_download(repo, cache_dir=str(model_cache), allow_patterns=COLPALI_MODEL_FILES))
    snapshot_download(repo, cache_dir=str(processor_cache), allow_patterns=COLPALI_PROCESSOR_FILES)
    config = json.loads((snapshot / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "modernvbert":
        sys.exit(
            f"COLPALI_ENGINE_MODEL_NAME: {repo} is not a ModernVBERT model (model_type {config.get('model_type')!r}); "
            "the reference serves colpali-engine's BiModernVBert"
        )
    named = (
        config.get("text_config", {}).get("text_model_name"),
        config.get("vision_config", {}).get("vision_model_name"),
    )
    for encoder in sorted({*COLPALI_DEFAULT_ENCODERS, *filter(None, named)}):
        hf_hub_download(encoder, "config.json", cache_dir=str(model_cache))
    written = {
        "model_name": repo,
        "cache_dir": "./models/colpali_engine_model",
        "cache_dir_processor": "./models/colpali_engine_processor",
        "model_config": colpali_model_config(snapshot, model_cache),
    }
    (model_cache / "config.json").write_text(json.dumps(written))
    Path(models, "model_name").write_text(repo)
    print(f"{repo} -> {model_cache}, {processor_cache}", flush=True)


def download_colpali_encoders(cache: str) -> None:
    """The configs of colpali-engine's default encoders into the Hugging Face cache the image's service reads
    (``HF_HUB_CACHE``), so that a ColPali ``models/`` volume made by the reference image, which keeps them in
    its own cache, is served as it is. Best effort: a build that cannot reach them says so and goes on."""
    for encoder in COLPALI_DEFAULT_ENCODERS:
        try:
            hf_hub_download(encoder, "config.json", cache_dir=cache)
        except Exception as exc:  # noqa: BLE001 - only a reference-built ColPali volume needs them
            print(f"note: {encoder}'s config.json not baked ({exc}); a reference-built ColPali volume needs it")


def open_clip_registry(package: Path | None = None) -> Any:
    """open_clip's ``pretrained`` module (its registry of model/tag pairs and their hub repositories),
    imported from the installed package folder (or ``package``) without running the package's
    ``__init__``, which imports torch and torchvision; sys.modules is left as it was."""
    if package is None:
        spec = importlib.util.find_spec("open_clip")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("OPEN_CLIP_MODEL_NAME: open_clip_torch is not installed in the download environment")
        package = Path(list(spec.submodule_search_locations)[0])
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "open_clip"}
    stub = importlib.util.module_from_spec(importlib.machinery.ModuleSpec("open_clip", None, is_package=True))
    stub.__path__ = [str(package)]
    sys.modules["open_clip"] = stub
    try:
        registry = importlib.import_module("open_clip.pretrained")
    finally:
        for name in [name for name in sys.modules if name.split(".")[0] == "open_clip"]:
            del sys.modules[name]
        sys.modules.update(saved)
    registry.model_configs = package / "model_configs"
    return registry


def download_openclip_layout(model_name: str, pretrained: str, models: str, package: Path | None = None) -> None:
    """The reference's models/openclip: its download.py checks the pair against open_clip's registry,
    lets ``create_model_and_transforms(cache_dir=models/openclip)`` download the weights (safetensors where
    the hub repository has them, as open_clip tries first), and writes config.json with the architecture."""
    registry = open_clip_registry(package)
    if (model_name, pretrained) not in registry.list_pretrained():
        pairs = "\n".join(f"  model: {name} pretrained: {tag}" for name, tag in registry.list_pretrained())
        sys.exit(f"Available pairs are:\n{pairs}\nno OPEN_CLIP model {model_name} with pretrained {pretrained}")
    cache_dir = "./models/openclip"
    folder = Path(models, "openclip")
    model_id, filename = os.path.split(registry.get_pretrained_cfg(model_name, pretrained)["hf_hub"])
    filename = filename or registry.HF_WEIGHTS_NAME
    for name in [*registry._get_safe_alternatives(filename), filename]:
        try:
            hf_hub_download(model_id, name, cache_dir=str(folder))
            break
        except Exception as exc:  # noqa: BLE001 - open_clip tries the next name on any failure
            failure = exc
    else:
        sys.exit(f"{model_id}: cannot download {filename} ({failure})")
    config = {
        "model_name": model_name,
        "pretrained": pretrained,
        "model_config": json.loads((registry.model_configs / f"{model_name}.json").read_text(encoding="utf-8")),
        "cache_dir": cache_dir,
    }
    (folder / "config.json").write_text(json.dumps(config))
    print(f"{model_name} {pretrained} ({model_id}) -> {folder}", flush=True)


def main(target: str) -> None:
    model_id = os.environ.get("MODEL_ID", "").strip()
    clip_name = os.environ.get("CLIP_MODEL_NAME", "").strip()
    text_name = os.environ.get("TEXT_MODEL_NAME", "").strip() or clip_name
    siglip_name = os.environ.get("SIGLIP_MODEL_NAME", "").strip()
    open_clip = [os.environ.get(f"OPEN_CLIP_{key}", "").strip() for key in ("MODEL_NAME", "PRETRAINED")]
    colpali_name = os.environ.get("COLPALI_ENGINE_MODEL_NAME", "").strip()
    if sum(bool(name) for name in (model_id, clip_name, siglip_name, open_clip[0], colpali_name)) > 1:
        sys.exit(
            "set one of MODEL_ID, CLIP_MODEL_NAME, SIGLIP_MODEL_NAME, OPEN_CLIP_MODEL_NAME or "
            "COLPALI_ENGINE_MODEL_NAME, not both"
        )
    if any(open_clip) and not all(open_clip):
        sys.exit("OPEN_CLIP_MODEL_NAME and OPEN_CLIP_PRETRAINED go together (as in the reference)")
    Path(target).mkdir(parents=True, exist_ok=True)
    try:
        if colpali_name:
            download_colpali_layout(colpali_name, target)
        elif all(open_clip):
            download_openclip_layout(*open_clip, target)
        elif siglip_name:
            download_siglip_layout(siglip_name, target)
        elif clip_name and openai_layout(clip_name, os.environ.get("CLIP_MODEL_TYPE", "")):
            if text_name != clip_name:
                sys.exit(
                    "for OpenAI CLIP models CLIP_MODEL_NAME and TEXT_MODEL_NAME must be the same, as in the reference"
                )
            download_openai_layout(clip_name, target)
        elif clip_name:
            download(clip_name, os.path.join(target, "clip"))
            download(text_name, os.path.join(target, "text"))
        elif model_id.lower() != NO_MODEL:
            download(model_id or DEFAULT_MODEL_ID, target)
    except ModelRepoError as exc:
        sys.exit(str(exc))
    # the reference writes this file with every build; the service never runs remote code
    if clip_name or siglip_name or all(open_clip) or colpali_name:
        Path(target, "trust_remote_code").write_text(os.environ.get("TRUST_REMOTE_CODE", "").strip() or "False")


if __name__ == "__main__":
    if sys.argv[1] == "--encoders":  # download_model.py --encoders CACHE
        download_colpali_encoders(sys.argv[2])
    else:
        main(sys.argv[1])
