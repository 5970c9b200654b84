"""SigLIP towers on transformers' ``SiglipTextModel`` and ``SiglipVisionModel``.

Covers SigLIP (``google/siglip-*``) and the fixed-resolution SigLIP 2 checkpoints
(``google/siglip2-*-patch16-224`` and the like), which are the same ``SiglipModel`` architecture
(``model_type: siglip``) with a Gemma tokenizer. Each tower loads its half of the full checkpoint. The
outputs equal ``SiglipModel.get_text_features`` / ``get_image_features`` (``pooler_output``) on what
``SiglipProcessor`` makes:

- **Text** is tokenized with ``padding="max_length"`` to the model's length (64 for most checkpoints)
  and truncated there: SigLIP was trained on fixed-length, padded sequences and pools the last position,
  so a shorter padding would change the vector. SigLIP's sentencepiece tokenizer makes no attention
  mask and the model runs without one; the Gemma tokenizer of the SigLIP 2 checkpoints makes one, and the
  model gets it, as ``SiglipProcessor`` passes it. ``collate`` pads to that same length and the head runs
  row by row, so a text's vector does not depend on the batch it is computed in (bit for bit, on the
  CPU). The tokenizer's own rules apply (SigLIP's sentencepiece tokenizer lower-cases and drops
  punctuation).
- **Images** are resized to the model's square size (no crop; bicubic, as the processor file says),
  rescaled to [0, 1] and normalised with mean 0.5 / std 0.5: ``SiglipImageProcessorPil``'s steps and
  dtypes (``SiglipImageRecipe``), read from the directory's processor file.

Normalisation: SigLIP's features are not normalised by the model (its loss normalises them before
the sigmoid), and the towers return them raw, as the CLIP towers do; the engine L2-normalises every
vector unless ``VECTORIZER_NORMALIZE`` is off, as for CLIP. SigLIP's ``logit_scale`` / ``logit_bias``
are not used: cosine ranking does not need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import (
    AutoConfig,
    AutoTokenizer,
    PretrainedConfig,
    Siglip2Config,
    SiglipConfig,
    SiglipImageProcessorPil,
    SiglipTextModel,
    SiglipVisionModel,
)

from vectorizer_module.models.base import OneLengthPerPass, TextTower, VisionTower
from vectorizer_module.models.hf_common import PretrainedTower
from vectorizer_module.models.pixels import rescale_and_normalize, resize_bounded


def siglip_tower_config(weights_dir: Path, part: str) -> PretrainedConfig:
    """The text or vision config of a SigLIP or SigLIP 2 checkpoint (the full config or a tower's own)."""
    config = AutoConfig.from_pretrained(str(weights_dir), local_files_only=True)
    if isinstance(config, (SiglipConfig, Siglip2Config)):
        return getattr(config, f"{part}_config")
    return config


class SiglipTextTower(PretrainedTower, TextTower):
    """Texts → SigLIP text features. The model gets the attention mask only where the tokenizer makes
    one for it, as ``SiglipProcessor`` passes it: SigLIP's sentencepiece tokenizer does not (input ids
    only), the Gemma tokenizer of the SigLIP 2 checkpoints does."""

    input_names: tuple[str, ...] = ("input_ids",)
    padding: ClassVar[str | bool] = "max_length"
    model_class: ClassVar[type] = SiglipTextModel
    preprocessing_class: ClassVar[type] = AutoTokenizer
    config_of = staticmethod(siglip_tower_config)

    def __init__(self, model: SiglipTextModel, tokenizer: transformers.PreTrainedTokenizerBase):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        if "attention_mask" in getattr(tokenizer, "model_input_names", ()):
            self.input_names = ("input_ids", "attention_mask")
        positions = int(model.config.max_position_embeddings)
        limit = getattr(tokenizer, "model_max_length", None)
        self._max_length = min(int(limit), positions) if limit else positions

    @property
    def embedding_dim(self) -> int:
        return int(self.model.head.out_features)

    def preprocess(self, items: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids padded to ``max_length``; ``attention_mask`` marks the real tokens (for counting
        tokens only: the model does not take it)."""
        encoded = self.tokenizer(
            self.cut_to_context(items),
            padding=self.padding,
            truncation=True,
            max_length=self._max_length,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def batch_length(self, parts: Sequence[dict[str, torch.Tensor]]) -> int:
        """Every row is padded to ``max_length`` (never just to the longest in the batch)."""
        return max(self.max_length, super().batch_length(parts))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``pooler_output``: the head on the last position. The head runs as a batch of one-row products
        (not one matrix product over the batch, whose rounding depends on the batch size), so a text's
        vector is the same, bit for bit, alone or in any batch."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.row_wise_head(hidden[:, -1:, :])

    def row_wise_head(self, last: torch.Tensor) -> torch.Tensor:
        """The head on (batch, 1, width) hidden states, one row at a time."""
        head = self.model.head
        weight = head.weight.t().unsqueeze(0).expand(last.shape[0], -1, -1)
        return (torch.bmm(last, weight) + head.bias).squeeze(1)

    def layer_prefixes(self) -> list[str]:
        return [f"model.encoder.layers.{i}" for i in range(len(self.model.encoder.layers))]

    def embedding_prefixes(self) -> list[str]:
        return ["model.embeddings"]


class SiglipReferenceTextTower(OneLengthPerPass, SiglipTextTower):
    """SigLIP texts as the reference multi2vec-clip image computes them for its ``models/siglip``
    folder: ``SiglipProcessor(text=..., padding=True, truncation=True)``, so a text alone is not padded
    at all, and the last position the model pools is its own last token, not padding. (The reference pads
    the texts of one request to the longest of them, so its vector of a text depends on what else the
    request holds; here every text is computed as if alone, which equals the reference for a request
    with one text, Weaviate's usual, and for texts of one length.) Rows of different lengths cannot share
    a forward pass without changing each other, so ``row_groups`` splits a batch by length. Not exported
    to ONNX: the reference's numbers are torch's."""

    onnx_exportable = False
    padding = True  # to the longest of the items tokenised together: one at a time in the service, so none

    def batch_length(self, parts: Sequence[dict[str, torch.Tensor]]) -> int:
        return TextTower.batch_length(self, parts)


@dataclass(frozen=True)
class SiglipImageRecipe:
    """SigLIP's image preprocessing as data, run with PIL and numpy directly: the same steps and dtypes as
    ``SiglipImageProcessorPil`` (resize to height × width, rescale, normalise; no crop), so the same
    pixels, without its per-image overhead."""

    height: int
    width: int
    resample: int
    scale: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, processor: SiglipImageProcessorPil) -> SiglipImageRecipe | None:
        """The recipe of ``processor``, or None if it does something this fast path does not."""
        size = processor.size
        plain = (
            processor.do_resize
            and processor.do_rescale
            and processor.do_normalize
            and not getattr(processor, "do_center_crop", False)
            and not getattr(processor, "do_pad", False)
            and size.height
            and size.width
            and not size.shortest_edge
        )
        if not plain:
            return None
        return cls(
            int(size.height),
            int(size.width),
            int(processor.resample),
            float(processor.rescale_factor),
            np.asarray(processor.image_mean, dtype=np.float32),
            np.asarray(processor.image_std, dtype=np.float32),
        )

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One RGB image → float32 (3, height, width)."""
        image = resize_bounded(image, (self.width, self.height), self.resample)
        return rescale_and_normalize(np.asarray(image), self.scale, self.mean, self.std)


class SiglipVisionTower(PretrainedTower, VisionTower):
    """RGB images → SigLIP image features (the attention-pooling head's output)."""

    family_name: ClassVar[str] = "SigLIP"
    model_class: ClassVar[type] = SiglipVisionModel
    preprocessing_class: ClassVar[type] = SiglipImageProcessorPil
    config_of = staticmethod(siglip_tower_config)
    recipe_class: ClassVar[type | None] = SiglipImageRecipe  # None: the processor runs

    def __init__(self, model: SiglipVisionModel, processor: SiglipImageProcessorPil):
        super().__init__()
        if not model.config.vision_use_head:
            raise ValueError(
                f"this {self.family_name} vision model has no pooling head (vision_use_head is "
                "false), so it gives no image embedding"
            )
        self.model = model.eval()
        self.processor = processor
        self.recipe = self.recipe_class.of(processor) if self.recipe_class else None

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).pooler_output

    def layer_prefixes(self) -> list[str]:
        return [f"model.encoder.layers.{i}" for i in range(len(self.model.encoder.layers))]

    def embedding_prefixes(self) -> list[str]:
        return ["model.embeddings"]
