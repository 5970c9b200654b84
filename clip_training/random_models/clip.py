"""Random-weight CLIP models of the real architecture, written in every layout the service reads.

No model hub is reachable from our machines, so tests and benchmarks build their models here: ``tiny``
(a few hundred kB, for fast tests) and ``vit-b-32`` (the exact ``openai/clip-vit-base-patch32``
architecture, 151 M parameters, ~600 MB). The tokenizer is a byte-level CLIP tokenizer (no merges); for
``vit-b-32`` it is padded to CLIP's 49,408 ids so that the special tokens have their real ids.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

from vectorizer_module.models.clip_bpe import clip_vocabulary
from vectorizer_module.models.hf_common import quiet_transformers

ARCHITECTURES = {
    "tiny": dict(
        projection_dim=16,
        text_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
    ),
    # values of openai/clip-vit-base-patch32's config.json
    "vit-b-32": dict(
        projection_dim=512,
        logit_scale_init_value=2.6592,
        text_config=dict(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=8,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
        ),
        vision_config=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            image_size=224,
            patch_size=32,
            num_channels=3,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
        ),
    ),
}
VOCAB_SIZES = {"tiny": 514, "vit-b-32": 49408}
LAYOUTS = (
    "huggingface",
    "hub",
    "sentence-transformers",
    "sentence-transformers-legacy",
    "reference-image",
    "reference-image-st",
    "reference-image-multilingual",
)


def byte_level_tokenizer(vocab_size: int = 514, max_length: int = 77) -> CLIPTokenizer:
    """A CLIP tokenizer with one token per byte (and per word-final byte), padded to ``vocab_size``."""
    return CLIPTokenizer(vocab=clip_vocabulary([], vocab_size), merges=[], model_max_length=max_length)


def build_model(architecture: str = "tiny", seed: int = 0) -> tuple[CLIPModel, CLIPProcessor]:
    """A random-weight ``CLIPModel`` of ``architecture`` and its processor (deterministic for a seed)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[architecture]
    tokenizer = byte_level_tokenizer(VOCAB_SIZES[architecture])
    text_config = dict(
        spec["text_config"],
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = CLIPConfig(**dict(spec, text_config=text_config))
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    size = config.vision_config.image_size
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, resample=3
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _copy_tree(source: Path, target: Path) -> None:
    for path in source.iterdir():
        if path.is_file():
            _link_or_copy(path, target / path.name)


def _write_hub_files(hf_dir: Path, target: Path) -> None:
    """The files as the hub's openai/clip-vit-base-patch32 has them: flat preprocessor_config.json,
    vocab.json + merges.txt, no tokenizer.json."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        _link_or_copy(hf_dir / name, target / name)
    processor = json.loads((hf_dir / "processor_config.json").read_text())["image_processor"]
    processor["feature_extractor_type"] = "CLIPFeatureExtractor"
    (target / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    with quiet_transformers():
        tokenizer = CLIPTokenizer.from_pretrained(str(hf_dir))
    (target / "vocab.json").write_text(json.dumps(tokenizer.get_vocab(), ensure_ascii=False))
    (target / "merges.txt").write_text("#version: 0.2\n")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (target / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (target / "tokenizer_config.json").write_text(
        json.dumps(
            dict(special, model_max_length=tokenizer.model_max_length, tokenizer_class="CLIPTokenizer"), indent=2
        )
    )


def _write_st_root_files(target: Path, module_type: str, module_path: str) -> None:
    modules = [{"idx": 0, "name": "0", "path": module_path, "type": module_type}]
    (target / "modules.json").write_text(json.dumps(modules, indent=2))
    (target / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "model_type": "SentenceTransformer",
                "prompts": {"query": "", "document": ""},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            },
            indent=2,
        )
    )


def _write_sentence_transformers(hf_dir: Path, target: Path) -> None:
    """sentence-transformers 6 layout: the transformers files in the root, one Transformer module."""
    target.mkdir(parents=True, exist_ok=True)
    _copy_tree(hf_dir, target)
    _write_st_root_files(target, "sentence_transformers.base.modules.transformer.Transformer", "")
    modality = {m: {"method": f"get_{m}_features", "method_output_name": "pooler_output"} for m in ("text", "image")}
    (target / "sentence_bert_config.json").write_text(
        json.dumps(
            {
                "transformer_task": "feature-extraction",
                "modality_config": modality,
                "module_output_name": "sentence_embedding",
            },
            indent=2,
        )
    )


def _write_sentence_transformers_legacy(hf_dir: Path, target: Path) -> None:
    """The hub's sentence-transformers/clip-ViT-B-32 layout: the CLIP files in 0_CLIPModel/."""
    target.mkdir(parents=True, exist_ok=True)
    _write_hub_files(hf_dir, target / "0_CLIPModel")
    _write_st_root_files(target, "sentence_transformers.models.CLIPModel", "0_CLIPModel")


def write_layout(hf_dir: Path, target: Path, layout: str) -> Path:
    """Write the model saved in ``hf_dir`` to ``target`` in ``layout``; weights are hard-linked where
    possible. Returns the directory to pass as ``--model``."""
    hf_dir, target = Path(hf_dir), Path(target)
    if layout == "huggingface":
        target.mkdir(parents=True, exist_ok=True)
        _copy_tree(hf_dir, target)
    elif layout == "hub":
        _write_hub_files(hf_dir, target)
    elif layout == "sentence-transformers":
        _write_sentence_transformers(hf_dir, target)
    elif layout == "sentence-transformers-legacy":
        _write_sentence_transformers_legacy(hf_dir, target)
    elif layout == "reference-image":  # download.py of the reference image, OpenAI path
        _write_hub_files(hf_dir, target / "models" / "openai_clip")
        _write_hub_files(hf_dir, target / "models" / "openai_clip_processor")
    elif layout == "reference-image-st":  # download.py, sentence-transformers path
        _write_sentence_transformers_legacy(hf_dir, target / "models" / "clip")
        _write_sentence_transformers_legacy(hf_dir, target / "models" / "text")
    elif layout == "reference-image-multilingual":  # download.py with a multilingual text model
        from clip_training.random_models.multilingual import save_random_text_model

        config = json.loads((hf_dir / "config.json").read_text())
        big = config["projection_dim"] >= 512
        _write_sentence_transformers_legacy(hf_dir, target / "models" / "clip")
        save_random_text_model(
            target / "models" / "text",
            config["projection_dim"],
            architecture="distilbert-multilingual" if big else "tiny",
        )
    else:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    return target


def save_random_model(
    target: str | Path, architecture: str = "tiny", layout: str = "huggingface", seed: int = 0
) -> Path:
    """Build a random model and write it to ``target`` in ``layout``."""
    target = Path(target)
    model, processor = build_model(architecture, seed)
    hf_dir = target if layout == "huggingface" else target.with_name(target.name + ".hf")
    with quiet_transformers():
        model.save_pretrained(str(hf_dir))
        processor.save_pretrained(str(hf_dir))
    if layout == "huggingface":
        return target
    write_layout(hf_dir, target, layout)
    shutil.rmtree(hf_dir)
    return target
