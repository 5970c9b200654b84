"""What the SigLIP and SigLIP 2 tests share: the texts they embed, and the reference image features from
transformers' own model and processor (``reference``: the pair, as each test module's fixture loads it)."""

from __future__ import annotations

import torch

LONG_TEXT = " ".join(["a red circle on a white background with two small trees near the house"] * 12)
TEXTS = ["a photo of a cat", "A Photo, of a CAT!", "two dogs", "", "unseen wörds ∑ and emoji 🙂", LONG_TEXT]


@torch.inference_mode()
def reference_images(reference, images):
    model, processor = reference
    inputs = processor(images=images, return_tensors="pt")
    return model.get_image_features(**inputs).pooler_output.numpy()
