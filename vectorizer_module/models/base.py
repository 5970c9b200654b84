"""The tower interface: a query tower (text) and an items tower (vision) behind one small surface.

A tower is a ``torch.nn.Module`` whose ``forward`` takes tensors and returns the projected
(unnormalised) embedding, so it can be traced or exported on its own with ``example_inputs()``. Its
``preprocess`` turns raw items (strings, RGB PIL images) into those tensors with the model's own
tokenizer or image processor. A family names its layers (``layer_prefixes``, ``embedding_prefixes``);
training (``clip_training.freezing``) freezes by those names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from vectorizer_module.models.text_cut import TextCutter


def pad_rows(parts: Sequence[dict[str, torch.Tensor]], rows: int | None) -> Sequence[dict[str, torch.Tensor]]:
    """``parts`` followed by copies of the first, up to ``rows`` (a filler that is always valid input)."""
    if rows is None or len(parts) >= rows:
        return parts
    return [*parts, *[parts[0]] * (rows - len(parts))]


class Tower(torch.nn.Module):
    """Base of both towers. Subclasses set ``modality`` and ``input_names`` and implement the rest."""

    modality: ClassVar[str]
    input_names: ClassVar[tuple[str, ...]]
    onnx_exportable: ClassVar[bool] = True  # False where an exported graph cannot follow the forward

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Raw items → the named input tensors of ``forward`` (on the CPU)."""
        raise NotImplementedError

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        """Inputs of the right shapes and dtypes for tracing or export (on the tower's device)."""
        raise NotImplementedError

    @property
    def embedding_dim(self) -> int:
        raise NotImplementedError

    def layer_prefixes(self) -> list[str]:
        """Parameter-name prefixes of the tower's transformer layers, first layer first (for training)."""
        raise NotImplementedError

    # -- running -----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def row_groups(self, parts: Sequence[dict[str, torch.Tensor]]) -> list[list[int]]:
        """Which items may share one forward pass (indices into ``parts``): all of them, as padding does
        not change a row's vector; a tower whose rows must not be padded splits them."""
        return [list(range(len(parts)))]

    def collate(
        self, parts: Sequence[dict[str, torch.Tensor]], *, fixed_rows: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Items preprocessed one by one (batch dimension 1) → one batch. With ``fixed_rows``, the batch
        has that many rows whatever the number of items (``VECTORIZER_FIXED_SHAPE``): kernels then see
        one shape, and each row's result depends on that row alone."""
        parts = pad_rows(parts, fixed_rows)
        return {name: torch.cat([part[name] for part in parts]) for name in self.input_names}

    def to_model_inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Preprocessed tensors in ``forward``'s order, on the tower's device; floats in its dtype.
        On CUDA the copy goes through pinned memory, without blocking the host."""
        device, dtype = self.device, self.dtype
        cuda = device.type == "cuda"
        out = []
        for name in self.input_names:
            tensor = batch[name]
            if cuda:
                tensor = tensor.pin_memory()
            tensor = tensor.to(
                device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype, non_blocking=cuda
            )
            out.append(tensor)
        return tuple(out)

    def embed(self, items: Sequence[Any]) -> torch.Tensor:
        """Preprocess and run: the projected embeddings of ``items``, one row each, float32 on the CPU."""
        with torch.inference_mode():
            return self(*self.to_model_inputs(self.preprocess(items))).float().cpu()

    def embedding_prefixes(self) -> list[str]:
        """Parameter-name prefixes of the input embeddings (what training freezes with the first layers)."""
        return []


class OneLengthPerPass:
    """For towers whose rows must not be padded in length (the reference computes each alone, and padding
    would change them): a batch runs one token length at a time (``row_groups``) and is never padded in
    length; with ``fixed_rows``, in rows only. List it before the tower class among the bases."""

    def row_groups(self, parts: Sequence[dict[str, torch.Tensor]]) -> list[list[int]]:
        by_length: dict[int, list[int]] = {}
        for index, part in enumerate(parts):
            by_length.setdefault(int(part["input_ids"].shape[1]), []).append(index)
        return list(by_length.values())

    def collate(
        self, parts: Sequence[dict[str, torch.Tensor]], *, fixed_rows: int | None = None
    ) -> dict[str, torch.Tensor]:
        if len({int(part["input_ids"].shape[1]) for part in parts}) != 1:
            raise ValueError(
                f"inputs of different lengths in one {type(self).__name__} batch: split them by row_groups"
            )
        parts = pad_rows(parts, fixed_rows)
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}


class TextTower(Tower):
    """The query tower: texts → embeddings. Texts longer than ``max_length`` tokens are truncated.

    The defaults below serve towers that keep their transformers tokenizer in ``self.tokenizer`` and
    their token limit in ``self._max_length``."""

    modality = "text"
    input_names = ("input_ids", "attention_mask")
    example_texts: ClassVar[tuple[str, ...]] = (
        "a photo of a cat",
        "a red circle on a white background",
        "a diagram",
        "a dog",
    )
    tokenizer: Any
    _max_length: int
    _cutter: TextCutter | None | bool = False  # built on first use; None where texts are never cut

    @property
    def max_length(self) -> int:
        return self._max_length

    def cut_to_context(self, texts: Sequence[str]) -> list[str]:
        """Each text cut, before tokenising, to a prefix that gives the same tokens as the whole text
        does after truncation to the context (``text_cut.py``): a 200,000-character text costs what a
        page does."""
        if self._cutter is False:
            self._cutter = TextCutter.for_tokenizer(self.tokenizer, self.max_length)
        cutter = self._cutter
        return list(texts) if cutter is None else [cutter.cut(text) for text in texts]

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def preprocess(self, items: Sequence[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            self.cut_to_context(items), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        texts = [self.example_texts[i % len(self.example_texts)] for i in range(batch_size)]
        return self.to_model_inputs(self.preprocess(texts))

    def batch_length(self, parts: Sequence[dict[str, torch.Tensor]]) -> int:
        """The padded length of a batch: the longest item (not the context size)."""
        return max(part["input_ids"].shape[1] for part in parts)

    def collate(
        self, parts: Sequence[dict[str, torch.Tensor]], *, fixed_rows: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Pad each item's tokens on the right to ``batch_length``; with ``fixed_rows``, to the context
        (``max_length``), and the batch to that many rows."""
        longest = max(self.max_length, self.batch_length(parts)) if fixed_rows else self.batch_length(parts)
        parts = pad_rows(parts, fixed_rows)
        ids = torch.full((len(parts), longest), self.pad_token_id, dtype=parts[0]["input_ids"].dtype)
        mask = torch.zeros((len(parts), longest), dtype=parts[0]["attention_mask"].dtype)
        for row, part in enumerate(parts):
            length = part["input_ids"].shape[1]
            ids[row, :length] = part["input_ids"][0]
            mask[row, :length] = part["attention_mask"][0]
        return {"input_ids": ids, "attention_mask": mask}


class VisionTower(Tower):
    """The items tower: RGB images → embeddings.

    The default ``preprocess`` runs ``self.recipe`` (a fast per-image path, None where it does not
    apply) or else the transformers image processor in ``self.processor``."""

    modality = "image"
    input_names = ("pixel_values",)
    recipe: Any = None
    processor: Any

    @property
    def image_size(self) -> int:
        raise NotImplementedError

    def preprocess(self, items: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        if self.recipe is not None:
            return {"pixel_values": torch.from_numpy(np.stack([self.recipe(image) for image in items]))}
        return {"pixel_values": self.processor(images=list(items), return_tensors="pt")["pixel_values"]}

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        size = self.image_size
        pixels = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
        return self.to_model_inputs({"pixel_values": pixels})


@dataclass(frozen=True)
class ModelInfo:
    """What /meta says about the model."""

    name: str
    path: str
    family: str
    layout: str
    dimension: int
    text_max_tokens: int
    image_size: int
    builtin_demo: bool = False


@dataclass
class Towers:
    """A loaded model: the query (text) tower, the items (vision) tower, and what it is."""

    query: TextTower
    items: VisionTower
    info: ModelInfo

    @property
    def onnx_exportable(self) -> bool:
        """Whether both towers export to ONNX (``backends/onnx_backend.py``)."""
        return self.query.onnx_exportable and self.items.onnx_exportable
