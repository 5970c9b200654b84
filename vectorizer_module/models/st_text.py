"""A query tower on a sentence-transformers text model: transformer → pooling → dense layers.

This is how multilingual CLIP is built (``sentence-transformers/clip-ViT-B-32-multilingual-v1``, the text
model Weaviate's multi2vec-clip image uses for multilingual search): a multilingual encoder (DistilBERT,
XLM-R, ...) trained to put its sentence embedding into CLIP's space, beside CLIP's own vision tower.

The directory is read as sentence-transformers writes it, old (``0_Transformer/``, ``1_Pooling`` with
``pooling_mode_mean_tokens``, ``2_Dense/pytorch_model.bin``) and new (transformer in the root,
``pooling_mode: mean``, ``2_Dense/model.safetensors``). The output equals ``SentenceTransformer.encode``
on the same texts: pooled, through each Dense layer and its activation, L2-normalised only when the
model lists a ``Normalize`` module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import AutoModel, AutoTokenizer

from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models.base import TextTower
from vectorizer_module.models.files import read_json
from vectorizer_module.models.hf_common import quiet_transformers

POOLING_MODES = ("mean", "cls", "max")
ACTIVATIONS = {
    "Identity": torch.nn.Identity,
    "Tanh": torch.nn.Tanh,
    "ReLU": torch.nn.ReLU,
    "GELU": torch.nn.GELU,
    "Sigmoid": torch.nn.Sigmoid,
}


def _kind(module: dict) -> str:
    """``sentence_transformers.models.Dense`` / ``...base.modules.dense.Dense`` → ``Dense``."""
    return str(module.get("type", "")).rsplit(".", 1)[-1]


@dataclass(frozen=True)
class STTextModules:
    """The parts of a sentence-transformers text model directory."""

    transformer: Path
    pooling_mode: str
    dense: tuple[Path, ...]
    normalize: bool
    max_seq_length: int | None


def read_modules(root: Path) -> STTextModules:
    """The modules of ``root/modules.json`` if they form transformer → pooling → dense*, else
    ModelLayoutError saying what is there."""
    modules = read_json(root / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelLayoutError(f"{root / 'modules.json'} is not a list of modules")
    kinds = [_kind(m) for m in modules]
    if not kinds or kinds[0] != "Transformer" or "Pooling" not in kinds:
        raise ModelLayoutError(
            f"{root} lists the modules {kinds}; a text model needs Transformer, Pooling "
            "and optionally Dense and Normalize"
        )
    unknown = [k for k in kinds[1:] if k not in ("Pooling", "Dense", "Normalize")]
    if unknown:
        raise ModelLayoutError(f"{root} has modules this service does not run: {unknown}")
    transformer = root / str(modules[0].get("path", ""))
    pooling = read_json(root / str(modules[kinds.index("Pooling")].get("path", "")) / "config.json")
    mode = pooling.get("pooling_mode")
    if mode is None:  # the older keys: one boolean per mode
        chosen = [
            m
            for m in POOLING_MODES
            if pooling.get(f"pooling_mode_{m}_token" if m == "cls" else f"pooling_mode_{m}_tokens")
        ]
        mode = chosen[0] if len(chosen) == 1 else None
    if mode not in POOLING_MODES:
        raise ModelLayoutError(f"{root}: pooling {pooling} is not one of {', '.join(POOLING_MODES)}")
    max_seq_length = None
    for folder in (transformer, root):
        config = folder / "sentence_bert_config.json"
        length = read_json(config).get("max_seq_length") if config.is_file() else None
        if length:
            max_seq_length = int(length)
            break
    dense = tuple(root / str(m.get("path", "")) for m, k in zip(modules, kinds) if k == "Dense")
    return STTextModules(transformer, mode, dense, "Normalize" in kinds, max_seq_length)


def _dense_layer(folder: Path) -> torch.nn.Module:
    config = read_json(folder / "config.json")
    linear = torch.nn.Linear(
        int(config["in_features"]), int(config["out_features"]), bias=bool(config.get("bias", True))
    )
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ModelLayoutError(f"{folder} has no model.safetensors or pytorch_model.bin")
    linear.load_state_dict({key.removeprefix("linear."): value for key, value in state.items()})
    activation = str(config.get("activation_function", "torch.nn.modules.linear.Identity")).rsplit(".", 1)[-1]
    if activation not in ACTIVATIONS:
        raise ModelLayoutError(f"{folder}: activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
    return torch.nn.Sequential(linear, ACTIVATIONS[activation]())


class SentenceTransformerTextTower(TextTower):
    example_texts = ("a photo of a cat", "ein Foto von einem Hund", "une voiture rouge", "一只猫")

    def __init__(
        self,
        encoder: transformers.PreTrainedModel,
        tokenizer: transformers.PreTrainedTokenizerBase,
        pooling_mode: str,
        dense: Sequence[torch.nn.Module],
        normalize: bool,
        max_length: int,
    ):
        super().__init__()
        self.encoder = encoder.eval()
        self.tokenizer = tokenizer
        self.pooling_mode = pooling_mode
        self.dense = torch.nn.ModuleList(dense).eval()
        self.normalize = normalize
        self._max_length = max_length

    @classmethod
    def from_dir(cls, root: Path, tokenizer_dir: Path | None = None) -> SentenceTransformerTextTower:
        """``root``: the sentence-transformers directory (the one with ``modules.json``)."""
        parts = read_modules(Path(root))
        with quiet_transformers():
            encoder = AutoModel.from_pretrained(str(parts.transformer), local_files_only=True, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(parts.transformer), local_files_only=True)
        positions = int(getattr(encoder.config, "max_position_embeddings", 512))
        limits = [positions, parts.max_seq_length or positions]
        if getattr(tokenizer, "model_max_length", None) and tokenizer.model_max_length < 10**6:
            limits.append(int(tokenizer.model_max_length))
        return cls(
            encoder, tokenizer, parts.pooling_mode, [_dense_layer(d) for d in parts.dense], parts.normalize, min(limits)
        )

    @property
    def embedding_dim(self) -> int:
        if self.dense:
            return int(self.dense[-1][0].out_features)
        return int(self.encoder.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        if self.pooling_mode == "cls":
            pooled = tokens[:, 0]
        elif self.pooling_mode == "max":
            pooled = tokens.masked_fill(mask == 0, torch.finfo(tokens.dtype).min).max(dim=1).values
        else:
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        for layer in self.dense:
            pooled = layer(pooled)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled

    def _layer_list(self) -> tuple[str, torch.nn.ModuleList]:
        count = int(getattr(self.encoder.config, "num_hidden_layers", getattr(self.encoder.config, "n_layers", 0)))
        for name, module in self.encoder.named_modules():
            if isinstance(module, torch.nn.ModuleList) and len(module) == count:
                return name, module
        raise ValueError(f"cannot find the {count} transformer layers of {type(self.encoder).__name__}")

    def layer_prefixes(self) -> list[str]:
        name, layers = self._layer_list()
        return [f"encoder.{name}.{i}" for i in range(len(layers))]

    def embedding_prefixes(self) -> list[str]:
        return ["encoder.embeddings"]
