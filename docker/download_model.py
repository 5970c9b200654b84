"""Bake a Hugging Face model into the image at build time (the build stage has internet, the service not).

MODEL_ID: a transformers CLIP repository, downloaded into TARGET itself.
CLIP_MODEL_NAME [+ TEXT_MODEL_NAME]: the reference multi2vec-clip image's build arguments, two
sentence-transformers repositories downloaded into TARGET/clip and TARGET/text (the reference layout).
Nothing set: nothing downloaded (mount a model at run time instead).
"""

from __future__ import annotations

import os
import sys

from huggingface_hub import snapshot_download


def main(target: str) -> None:
    model_id = os.environ.get("MODEL_ID", "")
    clip_name = os.environ.get("CLIP_MODEL_NAME", "")
    text_name = os.environ.get("TEXT_MODEL_NAME", "") or clip_name
    if model_id and clip_name:
        sys.exit("set MODEL_ID or CLIP_MODEL_NAME, not both")
    if model_id:
        snapshot_download(model_id, local_dir=target)
    elif clip_name:
        snapshot_download(clip_name, local_dir=os.path.join(target, "clip"))
        snapshot_download(text_name, local_dir=os.path.join(target, "text"))


if __name__ == "__main__":
    main(sys.argv[1])
