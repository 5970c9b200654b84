"""Run by the tests with the reference image's own packages (open_clip 2.29.0 and huggingface_hub 0.36.0 from
``.reference-env``, torchvision from ``.openclip-env``; see ``tests/isolated_envs.py``), never imported by the
service. It plays the reference image's OpenCLIP path (download.py and clip.py of
weaviate/multi2vec-clip-inference, tag 1.5.0) on random-weight models, with no hub in reach:

    python3 tests/reference_openclip.py SPEC.json

SPEC holds ``variants``, each with ``models`` (the models/ folder to write), ``model_name`` and
``pretrained`` (a pair of open_clip's registry), ``model_cfg`` (a tiny architecture that stands in for the
registry's one of that name, so that the registry's real entry for the pair, its hub repository and its
preprocessing, is what the reference reads), ``weights`` (the file name the hub repository is given), and
``seed``; and ``texts`` and ``images`` to embed. For each variant the script

1. writes random weights into ``models/openclip`` as ``hf_hub_download(cache_dir=...)`` leaves a download
   there (``models--ORG--NAME/blobs/SHA256``, ``snapshots/REVISION/FILE`` linking to the blob, ``refs/main``);
2. runs the reference's download.py steps for OPEN_CLIP_MODEL_NAME / OPEN_CLIP_PRETRAINED (the pair check,
   ``create_model_and_transforms`` with that cache, offline, and its ``config.json``);
3. runs its clip.py ``ClipInferenceOpenCLIP`` (reading that config.json) on the texts and images, and
   saves the vectors it returns to ``models/reference.npz``.

With ``"registry": PATH`` it also writes, for every pair of open_clip's registry, the model config and
the preprocessing and QuickGELU setting of the pair, for the test of the service's preprocessing table.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # the reference's container at build time had the hub; this has none

import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import torch  # noqa: E402
from open_clip import factory, pretrained  # noqa: E402
from PIL import Image  # noqa: E402

REVISION = "5e2c1b6f0a9d4c3b8a7e6f5d4c3b2a1908f7e6d5"


def write_hub_cache(cache_dir: Path, repo_id: str, filename: str, payload: bytes) -> None:
    folder = cache_dir / ("models--" + repo_id.replace("/", "--"))
    blob = folder / "blobs" / hashlib.sha256(payload).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(payload)
    snapshot = folder / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / filename).symlink_to(os.path.relpath(blob, snapshot))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(REVISION)


def random_weights(variant: dict) -> bytes:
    torch.manual_seed(variant["seed"])
    model = open_clip.create_model(variant["model_name"])  # the tiny architecture, random
    with torch.no_grad():  # every parameter away from its initial value (layer norms start at 1 and 0)
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    if variant["weights"].endswith(".safetensors"):
        from safetensors.torch import save

        return save(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def download(model_name: str, model_pretrained: str) -> None:
    """download.py's OpenCLIP branch, run in the folder that holds models/ as the image's build does."""
    assert (model_name, model_pretrained) in open_clip.list_pretrained(), "not a pair the reference accepts"
    cache_dir = "./models/openclip"
    open_clip.create_model_and_transforms(model_name, pretrained=model_pretrained, cache_dir=cache_dir)
    model_config = open_clip.get_model_config(model_name)
    config = {
        "model_name": model_name,
        "pretrained": model_pretrained,
        "model_config": model_config,
        "cache_dir": cache_dir,
    }
    with open(os.path.join(cache_dir, "config.json"), "w") as f:
        json.dump(config, f)


@torch.no_grad()
def vectorize(texts: list[str], images: list[str]) -> dict[str, np.ndarray]:
    """clip.py's ClipInferenceOpenCLIP: its __init__, then vectorize() on a payload of base64 images."""
    with open("./models/openclip/config.json") as user_file:
        config = json.load(user_file)
    model, _, preprocess = open_clip.create_model_and_transforms(
        config["model_name"], pretrained=config["pretrained"], cache_dir="./models/openclip", device="cpu"
    )
    tokenizer = open_clip.get_tokenizer(config["model_name"])
    text_features = model.encode_text(tokenizer(texts))
    text_features /= text_features.norm(dim=-1, keepdim=True)
    image_vectors = []
    for path in images:
        encoded = base64.b64encode(Path(path).read_bytes()).decode()
        image = preprocess(Image.open(io.BytesIO(base64.b64decode(encoded)))).unsqueeze(0)
        features = model.encode_image(image)
        features /= features.norm(dim=-1, keepdim=True)
        image_vectors.append(features.tolist()[0])
    return {"texts": np.asarray(text_features.tolist()), "images": np.asarray(image_vectors)}


def registry() -> list[dict]:
    pairs = []
    for name, tag in open_clip.list_pretrained():
        cfg = pretrained.get_pretrained_cfg(name, tag)
        keys = ("mean", "std", "interpolation", "resize_mode")
        preprocess = {key: list(cfg[key]) if isinstance(cfg[key], tuple) else cfg[key] for key in keys}
        pairs.append(
            {
                "model_name": name,
                "pretrained": tag,
                "model_config": open_clip.get_model_config(name),
                "preprocess": preprocess,
                "tag_quick_gelu": bool(cfg.get("quick_gelu", False)),
            }
        )
    return pairs


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    if spec.get("registry"):
        Path(spec["registry"]).write_text(json.dumps(registry()))
    for variant in spec.get("variants", []):
        models = Path(variant["models"])
        name, tag = variant["model_name"], variant["pretrained"]
        factory._MODEL_CONFIGS[name] = variant["model_cfg"]  # the registry's name, a tiny architecture
        repo_id = pretrained.get_pretrained_cfg(name, tag)["hf_hub"].rstrip("/")
        write_hub_cache(models / "openclip", repo_id, variant["weights"], random_weights(variant))
        os.chdir(models.parent)
        download(name, tag)
        np.savez(models / "reference.npz", **vectorize(spec["texts"], spec["images"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
