"""CLIP towers on transformers' ``CLIPTextModelWithProjection`` and ``CLIPVisionModelWithProjection``.

Each tower loads on its own from a directory holding a CLIP checkpoint (the full ``CLIPModel`` weights
are fine: each tower takes its half), with its tokenizer or image processor from the same or another
directory. The outputs equal ``CLIPModel.get_text_features`` / ``get_image_features`` (``pooler_output``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import (
    AutoConfig,
    AutoTokenizer,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPTextModelWithProjection,
    CLIPVisionModelWithProjection,
    PretrainedConfig,
)

from vectorizer_module.models.base import TextTower, VisionTower
from vectorizer_module.models.hf_common import PretrainedTower
from vectorizer_module.models.pixels import rescale_and_normalize, resize_and_crop, shortest_edge_size


def tower_config(weights_dir: Path, part: str) -> PretrainedConfig:
    """The text or vision config of a checkpoint, with the projection size of the whole model (a full
    ``CLIPConfig`` keeps ``projection_dim`` at its top level, which need not reach its parts)."""
    config = AutoConfig.from_pretrained(str(weights_dir), local_files_only=True)
    if isinstance(config, CLIPConfig):
        sub = getattr(config, f"{part}_config")
        sub.projection_dim = config.projection_dim
        return sub
    return config


class HFClipTextTower(PretrainedTower, TextTower):
    model_class = CLIPTextModelWithProjection
    preprocessing_class = AutoTokenizer
    config_of = staticmethod(tower_config)

    def __init__(self, model: CLIPTextModelWithProjection, tokenizer: transformers.PreTrainedTokenizerBase):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        positions = model.config.max_position_embeddings
        self._max_length = min(int(getattr(tokenizer, "model_max_length", positions) or positions), positions)

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds

    def layer_prefixes(self) -> list[str]:
        return [f"model.text_model.encoder.layers.{i}" for i in range(len(self.model.text_model.encoder.layers))]

    def embedding_prefixes(self) -> list[str]:
        return ["model.text_model.embeddings"]


@dataclass(frozen=True)
class ClipImageRecipe:
    """CLIP's image preprocessing as data (read from the model's processor file), run with PIL and
    numpy directly: the same steps and dtypes as ``CLIPImageProcessorPil``, so the same pixels, at a
    fraction of its per-image Python overhead (it matters when many request threads share the GIL)."""

    shortest_edge: int
    crop_height: int
    crop_width: int
    resample: int
    scale: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, processor: CLIPImageProcessorPil) -> ClipImageRecipe | None:
        """The recipe of ``processor``, or None if it does something this fast path does not."""
        size, crop = processor.size, processor.crop_size
        plain = (
            processor.do_resize
            and processor.do_center_crop
            and processor.do_rescale
            and processor.do_normalize
            and not getattr(processor, "do_pad", False)
            and size.shortest_edge
            and not size.longest_edge
            and crop.height
            and crop.width
            and size.shortest_edge >= max(crop.height, crop.width)
        )
        if not plain:
            return None
        return cls(
            int(size.shortest_edge),
            int(crop.height),
            int(crop.width),
            int(processor.resample),
            float(processor.rescale_factor),
            np.asarray(processor.image_mean, dtype=np.float32),
            np.asarray(processor.image_std, dtype=np.float32),
        )

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One RGB image → float32 (3, crop_height, crop_width)."""
        size = shortest_edge_size(*image.size, self.shortest_edge)
        top, left = (size[1] - self.crop_height) // 2, (size[0] - self.crop_width) // 2
        pixels = resize_and_crop(image, size, left, top, (self.crop_width, self.crop_height), self.resample)
        return rescale_and_normalize(pixels, self.scale, self.mean, self.std)


class HFClipVisionTower(PretrainedTower, VisionTower):
    model_class = CLIPVisionModelWithProjection
    preprocessing_class = CLIPImageProcessorPil
    config_of = staticmethod(tower_config)

    def __init__(
        self, model: CLIPVisionModelWithProjection, processor: CLIPImageProcessorPil | None, recipe: Any = None
    ):
        """``recipe``: a preprocessing that replaces the processor's (OpenCLIP's, which has no processor)."""
        super().__init__()
        self.model = model.eval()
        self.processor = processor
        self.recipe = recipe if recipe is not None else ClipImageRecipe.of(processor)

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).image_embeds

    def layer_prefixes(self) -> list[str]:
        count = len(self.model.vision_model.encoder.layers)
        return [f"model.vision_model.encoder.layers.{i}" for i in range(count)]

    def embedding_prefixes(self) -> list[str]:
        return ["model.vision_model.embeddings", "model.vision_model.pre_layrnorm"]
