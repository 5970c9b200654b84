"""torch: the towers' own ``forward`` on their device, in their dtype (CPU or CUDA)."""

from __future__ import annotations

import numpy as np
import torch

from vectorizer_module.backends.base import Backend, Batch
from vectorizer_module.config import Settings
from vectorizer_module.models.base import Tower, Towers
from vectorizer_module.models.loading import ModelSource


class TorchBackend(Backend):
    name = "torch"

    @classmethod
    def create(cls, towers: Towers, source: ModelSource, settings: Settings, dtype: str) -> TorchBackend:
        return cls(towers, torch.device(settings.device), getattr(torch, dtype))

    def __init__(self, towers: Towers, device: torch.device, dtype: torch.dtype) -> None:
        """Moves both towers to ``device`` and ``dtype``."""
        self.towers: dict[str, Tower] = {tower.modality: tower for tower in (towers.query, towers.items)}
        for tower in self.towers.values():
            tower.to(device=device, dtype=dtype)

    def embed(self, modality: str, batch: Batch) -> np.ndarray:
        tower = self.towers[modality]
        with torch.inference_mode():
            return tower(*tower.to_model_inputs(dict(batch))).float().cpu().numpy()
