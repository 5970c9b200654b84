"""Independent reference vectors: transformers' own ``CLIPModel`` and ``CLIPProcessor`` on a directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer


def strict_json(text: str):
    """Parse JSON the way Go does: NaN and Infinity are errors."""

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


class ReferenceClip:
    def __init__(self, hf_dir: Path | str) -> None:
        self.model = CLIPModel.from_pretrained(str(hf_dir)).eval()
        self.processor = CLIPProcessor(
            image_processor=CLIPImageProcessorPil.from_pretrained(str(hf_dir)),
            tokenizer=CLIPTokenizer.from_pretrained(str(hf_dir)),
        )

    @torch.inference_mode()
    def texts(self, texts: list[str]) -> np.ndarray:
        inputs = self.processor(text=texts, padding=True, truncation=True, return_tensors="pt")
        return self.model.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).pooler_output.numpy()

    @torch.inference_mode()
    def images(self, images) -> np.ndarray:
        inputs = self.processor(images=images, return_tensors="pt")
        return self.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output.numpy()


def assert_parity(ours, reference, *, min_cosine: float = 0.99999, max_abs: float = 1e-5) -> None:
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    for row, (a, b) in enumerate(zip(ours, reference)):
        c = cosine(a, b)
        assert c >= min_cosine and not math.isnan(c), f"row {row}: cosine {c:.8f}"
    diff = float(np.abs(ours - reference).max())
    assert diff <= max_abs, f"max abs difference {diff:.3g} > {max_abs}"
