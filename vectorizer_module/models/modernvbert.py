"""ModernVBERT bi-encoders (colpali-engine's ``BiModernVBert``), as the reference image serves its
``COLPALI_ENGINE_MODEL_NAME`` build: one ModernBERT encoder reads both texts and images.

An image is split by the Idefics3 processor into tiles (and a global view), each tile goes through a
SigLIP vision transformer, a connector (pixel shuffle, then a linear map) turns its patches into
``image_seq_len`` embeddings, which take the place of the ``<image>`` tokens of a fixed prompt; a text is
tokenised as it is. Both are mean-pooled over the attention mask and L2-normalised. The two towers share
one encoder (loaded once).

The encoders' architectures are not in the model folder: colpali-engine builds them from the configs of
the hub repositories the model's config names (``text_config.text_model_name``,
``vision_config.vision_model_name``, e.g. ``jhu-clsp/ettin-encoder-150m`` and
``google/siglip2-base-patch16-512``), read from the Hugging Face cache. They are looked up in the model's
own hub cache folder first, then in ``HF_HUB_CACHE`` (``HF_HOME/hub``, ``~/.cache/huggingface/hub``).

The reference pads a request's texts (or prompts) on the left to the longest and ModernBERT numbers
positions from the first column, so its vector of an input depends on what else the request holds; here
every input is computed as if alone (``row_groups`` puts inputs of one length together), which equals the
reference for a request with one text or image, Weaviate's usual, and for inputs of one length.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from PIL import Image

from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models.base import OneLengthPerPass, TextTower, VisionTower
from vectorizer_module.models.files import hub_snapshot, read_json
from vectorizer_module.models.hf_common import quiet_transformers

# colpali-engine's image prompt (ColModernVBertProcessor.visual_prompt_prefix)
IMAGE_PROMPT = "<|begin_of_text|>User:<image>Describe the image.<end_of_utterance>\nAssistant:"


def hub_cache() -> Path:
    """The Hugging Face hub cache the reference's libraries read (huggingface_hub's own rule)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def encoder_config_dir(repo_id: str, model_cache: Path) -> Path:
    """The snapshot holding ``repo_id``'s config.json: in the model's hub cache folder, else the user's."""
    for cache in (model_cache, hub_cache()):
        snapshot = hub_snapshot(cache, repo_id)
        if snapshot is not None and (snapshot / "config.json").is_file():
            return snapshot
    raise ModelLayoutError(
        f"this ModernVBERT model builds its encoder from {repo_id!r}'s config.json, which is neither in "
        f"{model_cache} nor in the Hugging Face cache {hub_cache()} (set HF_HUB_CACHE, or put "
        f"models--{repo_id.replace('/', '--')}/snapshots/REVISION/config.json with refs/main in one of them)"
    )


class Connector(torch.nn.Module):
    """Pixel shuffle (``scale`` x ``scale`` neighbouring patches into one) and a linear map to the text width."""

    def __init__(self, vision_width: int, text_width: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.modality_projection = torch.nn.Module()
        self.modality_projection.proj = torch.nn.Linear(vision_width * scale**2, text_width, bias=False)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        batch, count, width = patches.shape
        side, s = int(count**0.5), self.scale
        x = patches.view(batch, side, side, width).reshape(batch, side, side // s, width * s)
        x = x.permute(0, 2, 1, 3).reshape(batch, side // s, side // s, width * s * s).permute(0, 2, 1, 3)
        return self.modality_projection.proj(x.reshape(batch, count // s**2, width * s * s))


class ModernVBertEncoder(torch.nn.Module):
    """The shared encoder: ``text_model`` (ModernBERT), ``vision_model`` (SigLIP's vision transformer) and
    ``connector``, with the checkpoint's parameter names under ``model.``."""

    def __init__(self, config: dict[str, Any], text_config: Any, vision_config: Any) -> None:
        from transformers import ModernBertModel, SiglipVisionModel

        super().__init__()
        self.text_model = ModernBertModel(text_config)
        self.vision_model = SiglipVisionModel(vision_config)
        self.connector = Connector(
            vision_config.hidden_size, text_config.hidden_size, int(config.get("pixel_shuffle_factor", 4))
        )
        self.image_token_id = int(config["image_token_id"])
        extra = int(config.get("additional_vocab_size", 0))
        self.additional_embedding = torch.nn.Embedding(extra, text_config.hidden_size) if extra else None

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        table = self.text_model.get_input_embeddings()
        if self.additional_embedding is None:
            return table(input_ids)
        extra = input_ids >= table.num_embeddings  # ids past the vocabulary: the added tokens' own table
        out = table(torch.where(extra, torch.zeros_like(input_ids), input_ids))
        out[extra] = self.additional_embedding(input_ids[extra] - table.num_embeddings)
        return out

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None = None
    ) -> torch.Tensor:
        embeds = self.embed_tokens(input_ids)
        if pixel_values is not None:
            tiles = pixel_values.reshape(-1, *pixel_values.shape[2:])
            real = (tiles == 0.0).flatten(1).sum(1) != tiles[0].numel()  # all-zero tiles are padding
            if not real.any():
                real[0] = True
            features = self.connector(self.vision_model(pixel_values=tiles[real]).last_hidden_state)
            embeds = self._merge(input_ids, embeds, features)
        hidden = self.text_model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
        return pooled / pooled.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def _merge(self, input_ids: torch.Tensor, embeds: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The ``<image>`` positions take the tiles' features, in order, ``features.shape[1]`` per tile."""
        per_tile = features.shape[1]
        image = input_ids == self.image_token_id
        if int(image.sum()) != features.shape[0] * per_tile:
            raise ValueError(f"{int(image.sum())} <image> tokens for {features.shape[0]} tiles of {per_tile}")
        merged = embeds.clone()
        merged[image] = features.reshape(-1, features.shape[-1]).to(embeds.dtype)
        return merged


def load_encoder(weights: Path, model_cache: Path) -> tuple[ModernVBertEncoder, dict[str, Any]]:
    """The encoder of the checkpoint in ``weights`` (a snapshot folder), float32, and its config."""
    from safetensors.torch import load_file
    from transformers import ModernBertConfig, SiglipConfig, SiglipVisionConfig

    config = read_json(weights / "config.json")
    if config.get("model_type") != "modernvbert":
        raise ModelLayoutError(f"{weights}/config.json is not a ModernVBERT model (model_type 'modernvbert')")
    text_dir = encoder_config_dir(config["text_config"]["text_model_name"], model_cache)
    vision_dir = encoder_config_dir(config["vision_config"]["vision_model_name"], model_cache)
    for folder, served in ((text_dir, ("modernbert",)), (vision_dir, ("siglip", "siglip_vision_model"))):
        model_type = read_json(folder / "config.json").get("model_type")
        if model_type not in served:
            raise ModelLayoutError(
                f"{folder}/config.json: a ModernVBERT encoder of model_type {model_type!r}; served: "
                f"{', '.join(served)} (ModernBERT text, SigLIP vision, as ModernVBERT's models have)"
            )
    with quiet_transformers():  # the encoders as colpali-engine builds them: from these configs alone
        text_config = ModernBertConfig.from_pretrained(str(text_dir), local_files_only=True)
        vision_config = (
            SiglipConfig.from_pretrained(str(vision_dir), local_files_only=True).vision_config
            if "vision_config" in read_json(vision_dir / "config.json")
            else SiglipVisionConfig.from_pretrained(str(vision_dir), local_files_only=True)
        )
    encoder = ModernVBertEncoder(config, text_config, vision_config)
    files = sorted(weights.glob("model*.safetensors"))
    if not files:
        raise ModelLayoutError(f"no model.safetensors in {weights}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    renamed = {}
    for key, value in state.items():
        name = key.removeprefix("model.")
        if name.startswith("text_model.embeddings.tok_embeddings.additional_embedding."):
            name = name.replace("text_model.embeddings.tok_embeddings.additional_embedding.", "additional_embedding.")
        renamed[name] = value.float()
    missing, unexpected = encoder.load_state_dict(renamed, strict=False)
    if missing:
        raise ModelLayoutError(f"{weights}: the checkpoint lacks {len(missing)} parameters, e.g. {missing[:3]}")
    return encoder.eval(), config


class _Shared(OneLengthPerPass):
    """What both towers hold: the one encoder (and inputs of one token length per forward pass)."""

    onnx_exportable: ClassVar[bool] = False  # the reference's numbers are torch's
    encoder: ModernVBertEncoder

    @property
    def embedding_dim(self) -> int:
        return int(self.encoder.text_model.config.hidden_size)

    def layer_prefixes(self) -> list[str]:
        return [f"encoder.text_model.layers.{i}" for i in range(len(self.encoder.text_model.layers))]

    def embedding_prefixes(self) -> list[str]:
        return ["encoder.text_model.embeddings"]


class ModernVBertTextTower(_Shared, TextTower):
    """Texts → the encoder's pooled, normalised vector."""

    def __init__(self, encoder: ModernVBertEncoder, tokenizer: Any) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self._max_length = int(encoder.text_model.config.max_position_embeddings)

    @classmethod
    def from_dir(cls, weights_dir: Path, preprocessing_dir: Path | None = None) -> Self:
        from transformers import AutoTokenizer

        encoder, _ = load_encoder(weights_dir, _model_cache(weights_dir))
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(preprocessing_dir or weights_dir), local_files_only=True)
        return cls(encoder, tokenizer)

    def preprocess(self, items: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids as the reference's ``process_texts`` makes them, cut to the context; a text that spells a
        special token (``<image>``) gets it as plain text, not as an image slot."""
        encoded = self.tokenizer(
            self.cut_to_context(items),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            split_special_tokens=True,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids, attention_mask)


class ModernVBertVisionTower(_Shared, VisionTower):
    """Images → tiles and prompt (Idefics3's processor) → the same encoder's vector."""

    input_names = ("input_ids", "attention_mask", "pixel_values")

    def __init__(self, encoder: ModernVBertEncoder, processor: Any) -> None:
        super().__init__()
        self.encoder = encoder
        self.processor = processor

    @classmethod
    def beside(cls, query: ModernVBertTextTower, preprocessing_dir: Path) -> Self:
        """The vision tower on the text tower's encoder (one copy of the weights)."""
        from transformers import Idefics3ImageProcessorPil, Idefics3Processor

        with quiet_transformers():
            images = Idefics3ImageProcessorPil.from_pretrained(str(preprocessing_dir), local_files_only=True)
            processor = Idefics3Processor(images, query.tokenizer, image_seq_len=_image_seq_len(query.encoder))
        processor.tokenizer.padding_side = "left"
        return cls(query.encoder, processor)

    @property
    def image_size(self) -> int:
        return int(self.processor.image_processor.max_image_size["longest_edge"])

    def preprocess(self, items: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """One image at a time: the reference's ``process_images`` of a single image."""
        if len(items) != 1:
            return self.collate([self.preprocess([item]) for item in items])
        out = self.processor(text=[IMAGE_PROMPT], images=[[items[0]]], padding="longest", return_tensors="pt")
        return {name: out[name] for name in self.input_names}

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        grey = Image.new("RGB", (self.image_size, self.image_size), (120, 130, 140))
        return self.to_model_inputs(self.collate([self.preprocess([grey])] * batch_size))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor
    ) -> torch.Tensor:
        return self.encoder(input_ids, attention_mask, pixel_values)


def _image_seq_len(encoder: ModernVBertEncoder) -> int:
    vision = encoder.vision_model.config
    return (vision.image_size // vision.patch_size) ** 2 // encoder.connector.scale**2


def _model_cache(weights: Path) -> Path:
    """The hub cache folder a snapshot folder sits in (``CACHE/models--ORG--NAME/snapshots/REV``)."""
    return weights.parents[2] if weights.parent.name == "snapshots" else weights
