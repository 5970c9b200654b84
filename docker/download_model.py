"""Bake a Hugging Face model into the image at build time (the build stage has internet, the service not).

MODEL_ID: a transformers CLIP or SigLIP repository, or an OpenCLIP one, downloaded into TARGET itself. An
OpenCLIP repository without tokenizer files gets CLIP's (OpenCLIP's standard models use CLIP's BPE).
CLIP_MODEL_NAME [+ TEXT_MODEL_NAME]: the reference multi2vec-clip image's build arguments, two
sentence-transformers repositories downloaded into TARGET/clip and TARGET/text (the reference layout).
Nothing set: nothing downloaded (mount a model at run time instead).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from huggingface_hub import snapshot_download

CLIP_TOKENIZER_REPO = "openai/clip-vit-base-patch32"


def needs_clip_tokenizer(root: Path) -> bool:
    """An OpenCLIP-only directory with neither tokenizer files nor OpenCLIP's BPE file."""
    names = {p.name for p in root.iterdir()} if root.is_dir() else set()
    return (
        "open_clip_config.json" in names
        and "config.json" not in names
        and "tokenizer.json" not in names
        and not {"vocab.json", "merges.txt"} <= names
        and "bpe_simple_vocab_16e6.txt.gz" not in names
    )


def main(target: str) -> None:
    model_id = os.environ.get("MODEL_ID", "")
    clip_name = os.environ.get("CLIP_MODEL_NAME", "")
    text_name = os.environ.get("TEXT_MODEL_NAME", "") or clip_name
    if model_id and clip_name:
        sys.exit("set MODEL_ID or CLIP_MODEL_NAME, not both")
    if model_id:
        snapshot_download(model_id, local_dir=target)
        if needs_clip_tokenizer(Path(target)):
            snapshot_download(CLIP_TOKENIZER_REPO, local_dir=target, allow_patterns=["vocab.json", "merges.txt"])
    elif clip_name:
        snapshot_download(clip_name, local_dir=os.path.join(target, "clip"))
        snapshot_download(text_name, local_dir=os.path.join(target, "text"))


if __name__ == "__main__":
    main(sys.argv[1])
