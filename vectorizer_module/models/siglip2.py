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
from collections.abc import Sequence

import torch
from PIL import Image
from transformers import Siglip2ImageProcessorPil, Siglip2TextModel, Siglip2VisionModel

from vectorizer_module.models.siglip import SiglipTextTower, SiglipVisionTower


class Siglip2TextTower(SiglipTextTower):
    """Texts → SigLIP 2 text features: SigLIP's text tower on ``Siglip2TextModel`` (its Gemma tokenizer
    makes an attention mask, which the model gets)."""

    model_class = Siglip2TextModel


class Siglip2VisionTower(SiglipVisionTower):
    """RGB images of any aspect ratio → SigLIP 2 image features (the attention-pooling head's output):
    SigLIP's vision tower, with NaFlex's three inputs and the processor as the whole preprocessing."""

    input_names = ("pixel_values", "pixel_attention_mask", "spatial_shapes")
    onnx_exportable = False
    family_name = "SigLIP 2"
    model_class = Siglip2VisionModel
    preprocessing_class = Siglip2ImageProcessorPil
    recipe_class = None

    @property
    def image_size(self) -> int:
        """The side of the square image that uses the whole patch budget (256 patches of 16: 256 px)."""
        return int(self.processor.patch_size) * math.isqrt(int(self.processor.max_num_patches))

    def preprocess(self, items: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        out = self.processor(images=list(items), return_tensors="pt")
        return {name: out[name] for name in self.input_names}

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        side = self.image_size
        shapes = [(side, side), (side * 2, side // 2), (side // 3 or 1, side)]
        images = [Image.new("RGB", shapes[i % len(shapes)], (40 * i % 256, 90, 160)) for i in range(batch_size)]
        return self.to_model_inputs(self.preprocess(images))

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_attention_mask: torch.Tensor,  # type: ignore[override]
        spatial_shapes: torch.Tensor,
    ) -> torch.Tensor:
        return self.model(
            pixel_values=pixel_values, pixel_attention_mask=pixel_attention_mask, spatial_shapes=spatial_shapes
        ).pooler_output
