"""Run in a subprocess with the reference image's transformers (4.57.3, in .reference-env) and
torchvision (.openclip-env) on PYTHONPATH: what Weaviate's multi2vec-clip-inference 1.5.0 does with a
MetaCLIP 2 checkpoint. Its download.py saves ``CLIPModel.from_pretrained(repo)`` to models/openai_clip and
``CLIPProcessor.from_pretrained(repo)`` to models/openai_clip_processor; its clip.py then embeds texts
(all of a request in one padded call) and images as below, dividing each vector by its norm.

    python reference_metaclip2.py SPEC.json   # {"repo", "models", "texts", "image_seed", "out"}
"""

import json
import sys

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import CLIPModel, CLIPProcessor


def main(spec_file: str) -> None:
    spec = json.loads(open(spec_file).read())
    models = spec["models"]
    CLIPModel.from_pretrained(spec["repo"]).save_pretrained(f"{models}/openai_clip")
    CLIPProcessor.from_pretrained(spec["repo"]).save_pretrained(f"{models}/openai_clip_processor")
    model = CLIPModel.from_pretrained(f"{models}/openai_clip").eval()
    processor = CLIPProcessor.from_pretrained(f"{models}/openai_clip_processor", use_fast=True)
    with torch.no_grad():
        inputs = processor(text=spec["texts"], return_tensors="pt", padding=True)
        text = model.text_projection(model.text_model(**inputs)[1])
        text = text / text.norm(dim=-1, keepdim=True)
        pixels = np.random.default_rng(spec["image_seed"]).integers(0, 255, (48, 40, 3), dtype=np.uint8)
        inputs = processor(images=[Image.fromarray(pixels)], return_tensors="pt", padding=True)
        image = model.visual_projection(model.vision_model(**inputs)[1])
        image = image / image.norm(dim=-1, keepdim=True)
    result = {"transformers": transformers.__version__, "text": text.tolist(), "image": image.tolist()}
    with open(spec["out"], "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main(sys.argv[1])
