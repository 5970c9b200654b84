"""SigLIP 2 NaFlex towers on transformers' ``Siglip2TextModel`` and ``Siglip2VisionModel``
(``model_type: siglip2``, e.g. ``google/siglip2-base-patch16-naflex``).

NaFlex keeps each image's aspect ratio: ``Siglip2ImageProcessorPil`` resizes it to the largest size,
in whole patches, that fits ``max_num_patches`` (256 for the hub's checkpoints), cuts it into patches and
pads the patch sequence to ``max_num_patches`` with a mask; ``spatial_shapes`` says how many patch rows
and columns are real, and the model resizes its position embeddings to that grid for each image. Every
image therefore has the same input length, so images of any shapes batch together; the padding is
masked out of attention and out of the pooling head. The outputs equal ``Siglip2Model.get_text_features``
/ ``get_image_features`` (``pooler_output``) on what ``Siglip2Processor`` makes.

Texts: the checkpoint's Gemma tokenizer (lower-cases), padded to ``max_length`` (64) on the tokenizer's
padding side and passed *with* its attention mask, as ``Siglip2Processor`` passes it; the pooled
position is the last one, whose head runs row by row as for SigLIP.

Normalisation, as for SigLIP: features are returned raw and the engine L2-normalises them. The ONNX
backend does not take SigLIP 2 NaFlex: the per-image resizing of the position embeddings depends on
``spatial_shapes``' values, which an exported graph cannot follow.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from transformers import AutoTokenizer, Siglip2ImageProcessorPil, Siglip2TextModel, Siglip2VisionModel

from vectorizer_module.models.base import VisionTower
from vectorizer_module.models.hf_clip import quiet_transformers
from vectorizer_module.models.siglip import SiglipTextTower, siglip_tower_config


class Siglip2TextTower(SiglipTextTower):
    """Texts → SigLIP 2 text features: SigLIP's text tower on ``Siglip2TextModel`` (its Gemma tokenizer
    makes an attention mask, which the model gets)."""

    @classmethod
    def from_dir(cls, weights_dir: Path, tokenizer_dir: Path | None = None) -> "Siglip2TextTower":
        with quiet_transformers():
            model = Siglip2TextModel.from_pretrained(
                str(weights_dir), config=siglip_tower_config(weights_dir, "text"), local_files_only=True,
                dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or weights_dir), local_files_only=True)
        return cls(model, tokenizer)


class Siglip2VisionTower(VisionTower):
    """RGB images of any aspect ratio → SigLIP 2 image features (the attention-pooling head's output)."""

    input_names = ("pixel_values", "pixel_attention_mask", "spatial_shapes")
    onnx_exportable = False

    def __init__(self, model: Siglip2VisionModel, processor: Siglip2ImageProcessorPil):
        super().__init__()
        if not model.config.vision_use_head:
            raise ValueError("this SigLIP 2 vision model has no pooling head (vision_use_head is false), "
                             "so it gives no image embedding")
        self.model = model.eval()
        self.processor = processor

    @classmethod
    def from_dir(cls, weights_dir: Path, processor_dir: Path | None = None) -> "Siglip2VisionTower":
        with quiet_transformers():
            model = Siglip2VisionModel.from_pretrained(
                str(weights_dir), config=siglip_tower_config(weights_dir, "vision"), local_files_only=True,
                dtype=torch.float32)
            processor = Siglip2ImageProcessorPil.from_pretrained(str(processor_dir or weights_dir),
                                                                 local_files_only=True)
        return cls(model, processor)

    @property
    def image_size(self) -> int:
        """The side of the square image that uses the whole patch budget (256 patches of 16: 256 px)."""
        return int(self.processor.patch_size) * math.isqrt(int(self.processor.max_num_patches))

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def preprocess(self, items: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        out = self.processor(images=list(items), return_tensors="pt")
        return {name: out[name] for name in self.input_names}

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        side = self.image_size
        shapes = [(side, side), (side * 2, side // 2), (side // 3 or 1, side)]
        images = [Image.new("RGB", shapes[i % len(shapes)], (40 * i % 256, 90, 160)) for i in range(batch_size)]
        return self.to_model_inputs(self.preprocess(images))

    def forward(self, pixel_values: torch.Tensor, pixel_attention_mask: torch.Tensor,  # type: ignore[override]
                spatial_shapes: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, pixel_attention_mask=pixel_attention_mask,
                          spatial_shapes=spatial_shapes).pooler_output

    def layer_prefixes(self) -> list[str]:
        return [f"model.encoder.layers.{i}" for i in range(len(self.model.encoder.layers))]

    def embedding_prefixes(self) -> list[str]:
        return ["model.embeddings"]
