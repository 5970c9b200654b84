"""Text-to-image retrieval on a held-out set: every unique caption is a query, every unique image is in
the gallery, and the towers' cosine similarity ranks the gallery.

Relevance (``relevance`` argument):
- ``pairs``: an image is relevant to a caption when the pairs file pairs them (the caption's own image,
  or images, when several lines share that exact caption text);
- ``attributes``: an image is relevant when it has every attribute the caption names (for the synthetic
  set: "a red circle" is relevant to every red circle, whatever its size, position or background). Its
  own image always qualifies, since it has the attributes its captions name;
- ``auto``: ``attributes`` when every line carries attributes, otherwise ``pairs``.

With attributes, queries are also grouped by which attributes they name (``colour+shape``,
``size+colour+shape+position``, ...), and each group is scored on its own besides ``all``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clip_training.data import PairSet, encode_images, encode_texts, trim
from clip_training.metrics import retrieval_metrics
from vectorizer_module.models.base import TextTower, VisionTower

RELEVANCE_MODES = ("auto", "pairs", "attributes")


@dataclass
class EvalSet:
    """A held-out set, encoded once: the gallery's pixels, the queries' tokens, and relevance."""

    name: str
    pixel_values: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    relevant: np.ndarray  # (queries, images) bool
    groups: dict[str, np.ndarray]  # group name -> query indices
    relevance: str

    @property
    def sizes(self) -> dict[str, int]:
        return {"queries": int(self.relevant.shape[0]), "gallery": int(self.relevant.shape[1])}


def relevance_matrix(pairs: PairSet, mode: str) -> tuple[np.ndarray, str]:
    """(queries × images relevance, the mode used)."""
    if mode not in RELEVANCE_MODES:
        raise ValueError(f"unknown relevance {mode!r}; choose from {', '.join(RELEVANCE_MODES)}")
    if mode == "auto":
        mode = "attributes" if pairs.has_attributes else "pairs"
    relevant = np.zeros((len(pairs.captions), len(pairs.images)), dtype=bool)
    for image, caption in pairs.pairs:
        relevant[caption, image] = True
    if mode == "attributes":
        if not pairs.has_attributes:
            raise ValueError("relevance by attributes needs attributes and image_attributes on every line")
        for q, named in enumerate(pairs.caption_attributes):
            for i, has in enumerate(pairs.image_attributes):
                if all(has.get(key) == value for key, value in named.items()):
                    relevant[q, i] = True
    return relevant, mode


def query_groups(pairs: PairSet, mode: str) -> dict[str, np.ndarray]:
    """``all``, and with attributes one group per set of named attributes (in the order named)."""
    groups = {"all": np.arange(len(pairs.captions))}
    if mode == "attributes":
        by_kind: dict[str, list[int]] = {}
        for q, named in enumerate(pairs.caption_attributes):
            by_kind.setdefault("+".join(named), []).append(q)
        groups.update({kind: np.array(indices) for kind, indices in sorted(by_kind.items(), key=lambda kv: len(kv[0]))})
    return groups


def build_eval_set(name: str, pairs: PairSet, text: TextTower, vision: VisionTower, relevance: str = "auto") -> EvalSet:
    relevant, mode = relevance_matrix(pairs, relevance)
    ids, mask = encode_texts(text, pairs.captions)
    return EvalSet(name, encode_images(vision, pairs.images), ids, mask, relevant, query_groups(pairs, mode), mode)


@torch.inference_mode()
def embed_all(
    tower: torch.nn.Module, tensors: Sequence[torch.Tensor], batch_size: int, device: torch.device
) -> torch.Tensor:
    """L2-normalised float32 embeddings of the whole set, in batches, on the CPU."""
    parts = []
    for start in range(0, len(tensors[0]), batch_size):
        batch = [t[start : start + batch_size] for t in tensors]
        if len(batch) == 2:
            batch = list(trim(*batch))
        inputs = [t.to(device) for t in batch]
        parts.append(torch.nn.functional.normalize(tower(*inputs).float(), dim=-1).cpu())
    return torch.cat(parts)


def evaluate(
    eval_set: EvalSet, text: TextTower, vision: VisionTower, ks: Sequence[int], batch_size: int = 256
) -> dict[str, dict[str, float]]:
    """Metrics of each query group (see module docstring), computed in float32 with the towers in eval
    mode."""
    device = text.device
    modes = text.training, vision.training
    text.eval(), vision.eval()
    try:
        queries = embed_all(text, (eval_set.input_ids, eval_set.attention_mask), batch_size, device)
        gallery = embed_all(vision, (eval_set.pixel_values.to(vision.dtype),), batch_size, device)
    finally:
        text.train(modes[0]), vision.train(modes[1])
    scores = (queries @ gallery.T).numpy()
    return {
        group: retrieval_metrics(scores[indices], eval_set.relevant[indices], ks)
        for group, indices in eval_set.groups.items()
    }
