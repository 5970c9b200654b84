"""The backend interface: health, largest batch, embed a batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch

    from vectorizer_module.config import Settings
    from vectorizer_module.models.base import Towers
    from vectorizer_module.models.loading import ModelSource

# one collated batch of a tower's inputs, by input name, as the tower's ``collate`` makes it
Batch = Mapping[str, "torch.Tensor"]


class Backend(ABC):
    """Runs the forward passes of both towers: ``embed("text" | "image", batch)``."""

    name: ClassVar[str]
    max_batch: int | None = None  # the most rows one embed takes; None: no limit of its own

    @classmethod
    @abstractmethod
    def create(cls, towers: Towers, source: ModelSource, settings: Settings, dtype: str) -> Backend:
        """The backend running ``towers`` (loaded from ``source``) in ``dtype`` (``VECTORIZER_DTYPE``
        resolved) with ``settings``; ``RuntimeError`` saying why where it cannot."""

    @abstractmethod
    def embed(self, modality: str, batch: Batch) -> np.ndarray:
        """The projected, unnormalised embeddings of ``batch``'s rows, float32, one row each."""

    def health(self, examples: Mapping[str, Batch]) -> None:
        """Raise ``RuntimeError`` saying what is wrong if a batch of each modality (``examples``) does not
        give one finite row per input: a model that overflows in its dtype, or a device that fails, stops
        the start-up with a reason instead of answering 500s later."""
        for modality, batch in examples.items():
            rows = len(next(iter(batch.values())))
            try:
                out = self.embed(modality, batch)
            except Exception as exc:
                raise RuntimeError(f"the {self.name} backend fails on a {modality} batch: {exc}") from exc
            if out.ndim != 2 or len(out) != rows:
                raise RuntimeError(f"the {self.name} backend gave {out.shape} for {rows} {modality} input(s)")
            if not np.isfinite(out).all():
                raise RuntimeError(
                    f"the {self.name} backend gives non-finite {modality} embeddings (NaN or infinity): "
                    "the model overflows in this precision; try VECTORIZER_DTYPE=float32"
                )
