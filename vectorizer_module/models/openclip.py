"""OpenCLIP checkpoints, served without the ``open_clip`` package.

An OpenCLIP directory, as the hub ships one (``laion/*``, ``timm/*-openai``, ``apple/DFN*``), holds
``open_clip_config.json`` (``model_cfg`` and ``preprocess_cfg``) and the weights
(``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``). For the standard architecture
(a ViT image tower and OpenCLIP's causal text transformer, as in ``ViT-B-32``, ``ViT-L-14``,
``ViT-H-14``, with or without QuickGELU) the weights are renamed, and the fused attention projections
split, into transformers' CLIP towers: the same layers, so the same vectors, through the same
``HFClipTextTower`` / ``HFClipVisionTower`` (freezing, ONNX and batching work unchanged). Other
OpenCLIP architectures (timm or Hugging Face towers, ResNets, layer scale, attentional pooling, CoCa)
are refused by name.

The reference multi2vec-clip image keeps its OpenCLIP model (``OPEN_CLIP_MODEL_NAME`` and
``OPEN_CLIP_PRETRAINED``) otherwise: ``models/openclip/config.json`` names the registry pair
(``model_name``, ``pretrained``) and holds the architecture (``model_config``), and the weights sit in
the hub cache open_clip downloaded them into (``models--ORG--NAME/snapshots/REV/``). The image's
preprocessing then comes from open_clip's pretrained registry, whose few departures from OpenCLIP's
default are in ``TAG_PREPROCESSING``; QuickGELU comes from ``model_config`` alone, as in open_clip, which
only warns when a tag was trained with it and the configuration lacks it. Neither layout needs to hold a
tokenizer when one is configured (``--clip-tokenizer``) or open_clip is installed (its BPE file).

open_clip itself is not a dependency: it needs torchvision, whose presence changes the image pipeline
of sentence-transformers (see the README). What OpenCLIP's own pipeline does is reproduced here:

- **Text**: OpenCLIP's tokenizer is OpenAI's CLIP BPE: transformers tokenizer files (``tokenizer.json``,
  or ``vocab.json`` + ``merges.txt``), or OpenCLIP's own BPE file ``bpe_simple_vocab_16e6.txt.gz`` (the
  file in the open_clip package). Texts are cleaned as OpenCLIP cleans them (ftfy, HTML entities
  unescaped twice, whitespace collapsed, lower case). The vector is taken at the end-of-text token, as
  OpenCLIP's ``argmax`` pooling does.
- **Images**: ``preprocess_cfg`` (mean, std, interpolation, resize mode ``shortest`` or ``squash``),
  with torchvision's steps: resize the short side (bicubic by default), crop the centre (offsets
  rounded as torchvision rounds them), divide by 255 in float32, normalise.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import (
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models.clip_bpe import clip_vocabulary
from vectorizer_module.models.files import has_tokenizer_files, hub_snapshots, read_json
from vectorizer_module.models.hf_clip import HFClipTextTower, HFClipVisionTower
from vectorizer_module.models.hf_common import quiet_transformers
from vectorizer_module.models.pixels import resize_and_crop, resize_bounded, shortest_edge_size

CONFIG_NAME = "open_clip_config.json"
REFERENCE_CONFIG_NAME = "config.json"  # the reference image's models/openclip/config.json
WEIGHT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
INCEPTION_MEAN_STD = (0.5, 0.5, 0.5)
# open_clip's pretrained registry (2.29.0, the reference image's; 3.3.0 agrees) gives every pair of the
# architectures served here OpenCLIP's default preprocessing (OpenAI's mean and std, bicubic, shortest side
# resized and the centre cropped) except these; tests/unit/service/models/test_openclip_reference.py checks the table
# against the registry itself.
TAG_PREPROCESSING: dict[tuple[str, str], dict[str, Any]] = {
    ("ViT-L-14", "laion2b_s32b_b82k"): {"mean": INCEPTION_MEAN_STD, "std": INCEPTION_MEAN_STD},
    **{
        (name, "dfn5b"): {"resize_mode": "squash"}
        for name in ("ViT-H-14", "ViT-H-14-378", "ViT-H-14-quickgelu", "ViT-H-14-378-quickgelu")
    },
}
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}

# Settings of OpenCLIP's towers that this conversion does not reproduce, with the value it needs.
_VISION_PLAIN = {
    "ls_init_value": None,
    "attentional_pool": False,
    "no_ln_pre": False,
    "pos_embed_type": "learnable",
    "pool_type": "tok",
    "block_type": None,
    "qk_norm": False,
    "scaled_cosine_attn": False,
    "scale_heads": False,
    "scale_attn_inner": False,
    "scale_attn": False,
    "scale_fc": False,
    "timm_model_name": None,
    "act_kwargs": None,
    "norm_kwargs": None,
}
_TEXT_PLAIN = {
    "ls_init_value": None,
    "embed_cls": False,
    "no_causal_mask": False,
    "pool_type": "argmax",
    "proj_bias": False,
    "proj_type": "linear",
    "block_type": None,
    "qk_norm": False,
    "scaled_cosine_attn": False,
    "scale_heads": False,
    "scale_attn_inner": False,
    "scale_attn": False,
    "scale_fc": False,
    "hf_model_name": None,
    "hf_tokenizer_name": None,
    "act_kwargs": None,
    "norm_kwargs": None,
}


def _weights_in(folder: Path) -> Path | None:
    return next((folder / name for name in WEIGHT_NAMES if (folder / name).is_file()), None)


def weights_file(root: Path) -> Path | None:
    """The weights of an OpenCLIP directory: in it, or in the one snapshot of the hub cache in it that
    holds OpenCLIP weights (the reference image's layout); ModelLayoutError if several snapshots do."""
    direct = _weights_in(root)
    if direct is not None:
        return direct
    found = {repo: path for repo, snapshot in hub_snapshots(root).items() if (path := _weights_in(snapshot))}
    if len(found) > 1:
        raise ModelLayoutError(
            f"the hub cache {root} holds OpenCLIP weights of several repositories ({', '.join(sorted(found))}): "
            "keep the one of the model its config.json names"
        )
    return next(iter(found.values()), None)


def is_reference_config(root: Path) -> bool:
    """Whether ``root`` holds the reference image's config.json (a registry pair and its architecture)."""
    path = root / REFERENCE_CONFIG_NAME
    config = read_json(path) if path.is_file() and not (root / CONFIG_NAME).is_file() else None
    return isinstance(config, dict) and {"model_name", "pretrained", "model_config"} <= set(config)


def config_file(root: Path) -> Path:
    """The file that describes the model: open_clip_config.json, or the reference image's config.json."""
    return root / (REFERENCE_CONFIG_NAME if is_reference_config(root) else CONFIG_NAME)


def tag_preprocessing(model_name: str, pretrained: str) -> dict[str, Any]:
    """The preprocessing open_clip's registry gives a pair (tags are compared as open_clip compares them)."""
    return dict(TAG_PREPROCESSING.get((model_name, pretrained.lower().replace("-", "_")), {}))


def _configs(root: Path) -> tuple[dict[str, Any] | None, dict[str, Any], str]:
    """The architecture, the preprocessing and what they were read from (for messages)."""
    if is_reference_config(root):
        config = read_json(root / REFERENCE_CONFIG_NAME)
        preprocess = tag_preprocessing(str(config["model_name"]), str(config["pretrained"]))
        return config["model_config"], preprocess, f"{root / REFERENCE_CONFIG_NAME}'s model_config"
    config = read_json(root / CONFIG_NAME)
    where = f"{root / CONFIG_NAME}'s model_cfg"
    if not isinstance(config, dict):
        return None, {}, where
    return config.get("model_cfg"), config.get("preprocess_cfg") or {}, where


def read_config(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The architecture (``model_cfg``) and ``preprocess_cfg`` of an OpenCLIP directory; ModelLayoutError
    for an architecture the conversion does not cover."""
    model_cfg, preprocess, where = _configs(root)
    check_config(model_cfg, preprocess, where)
    return model_cfg, preprocess


def check_config(model_cfg: Any, preprocess: dict[str, Any], where: str = "the model config") -> None:
    """ModelLayoutError unless ``model_cfg`` is an architecture this conversion covers and ``preprocess``
    a preprocessing it reproduces (``where``: what they were read from, for the message)."""
    if not isinstance(model_cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(model_cfg):
        raise ModelLayoutError(f"{where} is missing or lacks embed_dim, vision_cfg or text_cfg")
    problems = []
    if model_cfg.get("custom_text") or model_cfg.get("multimodal_cfg"):
        problems.append("a custom text tower (custom_text / CoCa)")
    vision, text = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    if not isinstance(vision.get("layers", 12), int):
        problems.append("a ResNet image tower")
    if not isinstance(vision.get("image_size", 224), int):
        problems.append("a non-square image size")
    for part, cfg, plain in (("vision_cfg", vision, _VISION_PLAIN), ("text_cfg", text, _TEXT_PLAIN)):
        problems += [
            f"{part}.{key}={cfg[key]!r}"
            for key, want in plain.items()
            if cfg.get(key, want) not in (want, {}, "default")
        ]
    if preprocess.get("resize_mode", "shortest") not in ("shortest", "squash"):
        problems.append(f"preprocess_cfg.resize_mode={preprocess['resize_mode']!r}")
    if preprocess.get("interpolation", "bicubic") not in RESAMPLE:
        problems.append(f"preprocess_cfg.interpolation={preprocess['interpolation']!r}")
    if problems:
        raise ModelLayoutError(
            f"{where} describes an OpenCLIP architecture that is not supported ({', '.join(problems)}); "
            "supported: the standard ViT image tower and causal text transformer (ViT-B-32, ViT-L-14, ...). "
            "If the hub repository also ships Hugging Face CLIP files (config.json, model.safetensors), "
            "serve those instead."
        )


def _act(model_cfg: dict[str, Any]) -> str:
    return "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"


def text_config(model_cfg: dict[str, Any]) -> CLIPTextConfig:
    text = model_cfg["text_cfg"]
    width = int(text.get("width", 512))
    return CLIPTextConfig(
        vocab_size=int(text.get("vocab_size", 49408)),
        hidden_size=width,
        intermediate_size=int(width * float(text.get("mlp_ratio", 4.0))),
        num_hidden_layers=int(text.get("layers", 12)),
        num_attention_heads=int(text.get("heads", 8)),
        max_position_embeddings=int(text.get("context_length", 77)),
        hidden_act=_act(model_cfg),
        layer_norm_eps=1e-5,
        projection_dim=int(model_cfg["embed_dim"]),
        eos_token_id=2,
    )  # 2: transformers' legacy rule, pool at the highest id (OpenCLIP's "argmax")


def vision_config(model_cfg: dict[str, Any]) -> CLIPVisionConfig:
    vision = model_cfg["vision_cfg"]
    width = int(vision.get("width", 768))
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=int(width * float(vision.get("mlp_ratio", 4.0))),
        num_hidden_layers=int(vision.get("layers", 12)),
        num_attention_heads=width // int(vision.get("head_width", 64)),
        image_size=int(vision.get("image_size", 224)),
        patch_size=int(vision.get("patch_size", 16)),
        hidden_act=_act(model_cfg),
        layer_norm_eps=1e-5,
        projection_dim=int(model_cfg["embed_dim"]),
    )


def read_state_dict(root: Path, part: str) -> dict[str, torch.Tensor]:
    """The weights of one tower (``part``: "text" or "vision"; OpenCLIP keeps the image tower under
    ``visual.``), read without loading the other tower's where the format allows it."""
    path = weights_file(root)
    if path is None:
        raise ModelLayoutError(f"OpenCLIP directory {root} has no weights ({' or '.join(WEIGHT_NAMES)})")

    def wanted(key: str) -> bool:
        return key.removeprefix("module.").startswith("visual.") == (part == "vision")

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as weights:
            state = {key: weights.get_tensor(key) for key in weights.keys() if wanted(key)}
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        state = {key: value for key, value in state.get("state_dict", state).items() if wanted(key)}
    return {key.removeprefix("module."): value for key, value in state.items()}


def _blocks(state: dict[str, torch.Tensor], source: str, target: str, layers: int) -> dict[str, torch.Tensor]:
    """One transformer's residual blocks in transformers' names; the fused q/k/v projection split."""
    out = {}
    names = {
        "ln_1": "layer_norm1",
        "ln_2": "layer_norm2",
        "attn.out_proj": "self_attn.out_proj",
        "mlp.c_fc": "mlp.fc1",
        "mlp.c_proj": "mlp.fc2",
    }
    for i in range(layers):
        src, dst = f"{source}.resblocks.{i}", f"{target}.layers.{i}"
        for old, new in names.items():
            for kind in ("weight", "bias"):
                out[f"{dst}.{new}.{kind}"] = state[f"{src}.{old}.{kind}"]
        for kind in ("weight", "bias"):
            q, k, v = state[f"{src}.attn.in_proj_{kind}"].chunk(3, dim=0)
            out.update(
                {
                    f"{dst}.self_attn.q_proj.{kind}": q,
                    f"{dst}.self_attn.k_proj.{kind}": k,
                    f"{dst}.self_attn.v_proj.{kind}": v,
                }
            )
    return out


# transformers' names of each tower's parameters outside its residual blocks, with OpenCLIP's; the
# projection, stored (width, embed) by OpenCLIP, is a Linear weight (embed, width) in transformers.
TEXT_NAMES = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
VISION_NAMES = {
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
}


def _tower_state(
    state: dict[str, torch.Tensor],
    blocks: tuple[str, str],
    layers: int,
    names: dict[str, str],
    projection: tuple[str, str],
) -> dict[str, torch.Tensor]:
    out = _blocks(state, *blocks, layers)
    out.update({new: state[old] for new, old in names.items()})
    out[projection[0]] = state[projection[1]].t().contiguous()
    return out


def text_state(state: dict[str, torch.Tensor], config: CLIPTextConfig) -> dict[str, torch.Tensor]:
    return _tower_state(
        state,
        ("transformer", "text_model.encoder"),
        config.num_hidden_layers,
        TEXT_NAMES,
        ("text_projection.weight", "text_projection"),
    )


def vision_state(state: dict[str, torch.Tensor], config: CLIPVisionConfig) -> dict[str, torch.Tensor]:
    return _tower_state(
        state,
        ("visual.transformer", "vision_model.encoder"),
        config.num_hidden_layers,
        VISION_NAMES,
        ("visual_projection.weight", "visual.proj"),
    )


def _load(model: torch.nn.Module, weights: dict[str, torch.Tensor], root: Path) -> torch.nn.Module:
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or unexpected:
        raise ModelLayoutError(
            f"the OpenCLIP weights in {root} do not fit their config "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    return model.eval()


def bpe_tokenizer(bpe_file: Path, context_length: int) -> CLIPTokenizer:
    """CLIP's tokenizer from OpenCLIP's BPE merges file: the vocabulary is the byte symbols, the same
    with the end-of-word mark, one entry per merge, then the start and end tokens (49408 in all)."""
    lines = gzip.decompress(bpe_file.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    with quiet_transformers():
        return CLIPTokenizer(
            vocab=clip_vocabulary(["".join(pair) for pair in merges]), merges=merges, model_max_length=context_length
        )


def has_tokenizer(location: Path) -> bool:
    """Whether ``location`` is OpenCLIP's BPE file or a folder with CLIP's tokenizer files or that file."""
    if location.is_file():
        return location.name.endswith(".txt.gz")
    return has_tokenizer_files(location) or (location / BPE_NAME).is_file()


def installed_bpe() -> Path | None:
    """The BPE file of an installed open_clip package, found without importing it (it needs torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return next((Path(folder) / BPE_NAME for folder in folders if (Path(folder) / BPE_NAME).is_file()), None)


def find_tokenizer(root: Path, configured: str | Path | None = None) -> Path | None:
    """Where the CLIP tokenizer of the OpenCLIP model in ``root`` is read from: ``root`` itself, else the
    configured file or folder, else the BPE file of an installed open_clip."""
    candidates = [root] + ([Path(configured).expanduser()] if configured else []) + [installed_bpe()]
    return next((c for c in candidates if c is not None and has_tokenizer(c)), None)


def load_tokenizer(location: Path, context_length: int) -> CLIPTokenizer:
    """CLIP's tokenizer from a folder (transformers' files or OpenCLIP's BPE file) or the BPE file itself."""
    if location.is_dir() and has_tokenizer_files(location):
        with quiet_transformers():
            return CLIPTokenizer.from_pretrained(str(location), local_files_only=True, model_max_length=context_length)
    bpe = location if location.is_file() else location / BPE_NAME
    if bpe.is_file():
        return bpe_tokenizer(bpe, context_length)
    raise ModelLayoutError(
        f"no CLIP tokenizer in {location}: add CLIP's tokenizer files (tokenizer.json, or vocab.json and "
        f"merges.txt, e.g. from openai/clip-vit-base-patch32) or OpenCLIP's {BPE_NAME}"
    )


def clean_text(text: str) -> str:
    """OpenCLIP's text cleaning: ftfy, HTML entities unescaped twice, whitespace collapsed, lower case."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


@dataclass(frozen=True)
class OpenClipImageRecipe:
    """OpenCLIP's eval transform (torchvision Resize, CenterCrop, ToTensor, Normalize) on PIL and numpy."""

    size: int
    squash: bool
    resample: int
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, preprocess: dict[str, Any], image_size: int) -> OpenClipImageRecipe:
        return cls(
            image_size,
            preprocess.get("resize_mode", "shortest") == "squash",
            int(RESAMPLE[preprocess.get("interpolation", "bicubic")]),
            np.asarray(preprocess.get("mean", OPENAI_MEAN), dtype=np.float32),
            np.asarray(preprocess.get("std", OPENAI_STD), dtype=np.float32),
        )

    def __call__(self, image: Image.Image) -> np.ndarray:
        if self.squash:
            pixels = np.asarray(resize_bounded(image, (self.size, self.size), self.resample))
        else:
            size = shortest_edge_size(*image.size, self.size)
            top, left = int(round((size[1] - self.size) / 2.0)), int(round((size[0] - self.size) / 2.0))
            pixels = resize_and_crop(image, size, left, top, (self.size, self.size), self.resample)
        return ((pixels.astype(np.float32) / np.float32(255) - self.mean) / self.std).transpose(2, 0, 1)


class OpenClipTextTower(HFClipTextTower):
    @classmethod
    def from_dir(cls, weights_dir: Path, tokenizer: Path | None = None) -> OpenClipTextTower:
        """``tokenizer``: a folder or OpenCLIP's BPE file (see ``find_tokenizer``); default ``weights_dir``."""
        model_cfg, _ = read_config(weights_dir)
        config = text_config(model_cfg)
        with quiet_transformers():
            model = CLIPTextModelWithProjection(config)
        model = _load(model, text_state(read_state_dict(weights_dir, "text"), config), weights_dir)
        return cls(model, load_tokenizer(tokenizer or weights_dir, config.max_position_embeddings))

    def preprocess(self, items: Sequence[str]) -> dict[str, torch.Tensor]:
        return super().preprocess([clean_text(text) for text in items])


class OpenClipVisionTower(HFClipVisionTower):
    @classmethod
    def from_dir(cls, weights_dir: Path, processor_dir: Path | None = None) -> OpenClipVisionTower:
        model_cfg, preprocess = read_config(processor_dir or weights_dir)
        config = vision_config(model_cfg)
        with quiet_transformers():
            model = CLIPVisionModelWithProjection(config)
        model = _load(model, vision_state(read_state_dict(weights_dir, "vision"), config), weights_dir)
        return cls(model, None, OpenClipImageRecipe.of(preprocess, config.image_size))  # no image processor
