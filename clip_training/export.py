"""Write two towers (and the temperature) as one Hugging Face CLIP directory, and read the temperature
back from any model directory the service loads.

The directory holds ``config.json`` + ``model.safetensors`` of a ``CLIPModel`` and the tokenizer and
processor files, so ``clip-vectorizer --model DIR`` and ``CLIPModel.from_pretrained(DIR)`` both read it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import CLIPConfig, CLIPModel, CLIPProcessor

from vectorizer_module.models.hf_clip import HFClipTextTower, HFClipVisionTower
from vectorizer_module.models.hf_common import quiet_transformers
from vectorizer_module.models.loading import ModelSource

DEFAULT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature


def read_logit_scale(source: ModelSource) -> float:
    """The checkpoint's ``logit_scale`` (log inverse temperature), else its config's initial value, else
    CLIP's default. Looked up in the text weights' folder, then the vision weights'."""
    for folder in (source.text_weights, source.vision_weights):
        weights = folder / "model.safetensors"
        if weights.is_file():
            with safe_open(str(weights), framework="pt") as handle:
                if "logit_scale" in handle.keys():
                    return float(handle.get_tensor("logit_scale").float())
        config = folder / "config.json"
        if config.is_file():
            value = json.loads(config.read_text(encoding="utf-8")).get("logit_scale_init_value")
            if isinstance(value, (int, float)):
                return float(value)
    return DEFAULT_LOGIT_SCALE


def assemble_clip(text: HFClipTextTower, vision: HFClipVisionTower, logit_scale: float) -> CLIPModel:
    """One float32 ``CLIPModel`` on the CPU holding both towers' weights and the temperature."""
    if text.embedding_dim != vision.embedding_dim:
        raise ValueError(f"the towers project to {text.embedding_dim} and {vision.embedding_dim} dimensions")
    # without the folders they were loaded from, so that the same weights always write the same files
    text_config = {k: v for k, v in text.model.config.to_dict().items() if k != "_name_or_path"}
    vision_config = {k: v for k, v in vision.model.config.to_dict().items() if k != "_name_or_path"}
    config = CLIPConfig(
        text_config=text_config,
        vision_config=vision_config,
        projection_dim=text.embedding_dim,
        logit_scale_init_value=float(logit_scale),
    )
    with quiet_transformers():
        model = CLIPModel(config)
    state = {}
    for tower in (text, vision):
        state.update(
            {name: tensor.detach().to("cpu", torch.float32) for name, tensor in tower.model.state_dict().items()}
        )
    state["logit_scale"] = torch.tensor(float(logit_scale))
    model.load_state_dict(state, strict=True)
    return model.eval()


def save_clip_directory(
    text: HFClipTextTower, vision: HFClipVisionTower, logit_scale: float, target: str | Path
) -> Path:
    """Write the towers as a Hugging Face CLIP directory (weights, config, tokenizer, processor)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    model = assemble_clip(text, vision, logit_scale)
    processor = CLIPProcessor(image_processor=vision.processor, tokenizer=text.tokenizer)
    with quiet_transformers():
        model.save_pretrained(str(target))
        processor.save_pretrained(str(target))
    return target
