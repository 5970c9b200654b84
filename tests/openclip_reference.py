"""Run by the tests inside the isolated open_clip environment (``scripts/install.sh`` puts open_clip_torch
and torchvision in a folder of their own, see ``tests/isolated_envs.py``), never imported by the service.

    python3 tests/openclip_reference.py SPEC.json

SPEC names the model directory to write, the architecture and preprocessing, and the texts and image
files to embed. The script builds a random-weight OpenCLIP ``CLIP`` of that architecture, writes it as
OpenCLIP's hub directories hold it (``open_clip_config.json``, the weights, OpenCLIP's BPE file), loads
it back with ``open_clip.create_model_and_transforms("local-dir:...")`` and ``open_clip.get_tokenizer``
as a user would, and saves what OpenCLIP's own pipeline gives (tokens, pixels, raw features) to
``reference.npz`` in that directory.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.model import CLIP
from PIL import Image


def build(spec: dict, target: Path) -> None:
    model_cfg = spec["model_cfg"]
    torch.manual_seed(spec["seed"])
    model = CLIP(
        model_cfg["embed_dim"],
        model_cfg["vision_cfg"],
        model_cfg["text_cfg"],
        quick_gelu=model_cfg.get("quick_gelu", False),
    )
    with torch.no_grad():  # every parameter away from its initial value (layer norms start at 1 and 0)
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    target.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if spec["weights"].endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, str(target / spec["weights"]))
    else:
        torch.save(state, str(target / spec["weights"]))
    config = {"model_cfg": model_cfg, "preprocess_cfg": spec["preprocess_cfg"]}
    (target / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    shutil.copy(open_clip.tokenizer.default_bpe(), target / "bpe_simple_vocab_16e6.txt.gz")


@torch.inference_mode()
def reference(spec: dict, target: Path) -> None:
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{target}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{target}")
    model.eval()
    tokens = tokenizer(spec["texts"])
    pixels = torch.stack([preprocess(Image.open(path).convert("RGB")) for path in spec["images"]])
    np.savez(
        target / "reference.npz",
        tokens=tokens.numpy(),
        pixels=pixels.numpy(),
        texts=model.encode_text(tokens).numpy(),
        images=model.encode_image(pixels).numpy(),
    )


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    target = Path(spec["target"])
    build(spec, target)
    reference(spec, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
