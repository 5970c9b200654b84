"""The built-in demonstration model: a small CLIP of the real architecture, trained from scratch on the
synthetic shapes set with the ``finetune`` run, and shipped in ``vectorizer_module/default_model``
(``models.loading.BUILTIN_DEMO_DIR``).

``train_demo_model(OUT)`` does every step, seeded: write the data set, write the untrained model
(word-level tokenizer learnt from every caption the templates can make, random weights), fine-tune it on
the train split with the test split (held-out colour+shape combinations) and the validation split as
evaluation sets, and write the result to ``OUT``. On the CPU with the same thread count, torch version
and machine, it rewrites the shipped directory bit for bit.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

from clip_training.shapes import palette, synthetic, templates
from clip_training.train import FinetuneConfig, finetune
from clip_training.vocab import word_level_tokenizer
from vectorizer_module.models.hf_common import quiet_transformers

# MLP activations a demo model may use: CLIP's own, and the exact GELU, which torch runs as one fused op
ACTIVATIONS = ("quick_gelu", "gelu")


def _heads(width: int) -> int:
    """Attention heads of a tower: 32 wide each."""
    return max(1, width // 32)


@dataclass(frozen=True)
class DemoRecipe:
    """Architecture, data and training settings of the demo model (the defaults made the shipped one)."""

    image_size: int = 60  # the model's input side: a 5 x 5 grid of 12 px patches (64/16: small shapes lost)
    data_size: int = 64  # the classic renderer's side and the base of the varied canvases
    patch_size: int = 12
    vision_width: int = 192
    vision_layers: int = 4
    text_width: int = 128
    text_layers: int = 3
    projection_dim: int = 128
    activation: str = "gelu"  # both towers' MLPs, one of ACTIVATIONS (gelu: fewer ops per step than CLIP's quick_gelu)
    logit_scale_init: float = 4.6  # log inverse temperature at the start (CLIP's 2.66 learns size and position slower)
    images_per_cell: int = 600  # train split; x10 images per colour+shape combination (200: small shapes memorised)
    validation_per_cell: int = 1
    wild_per_cell: int = 1
    steps: int = 4200  # with 600 per cell, the whole command fits an hour on a 2-core host at 390 images/s
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: float = 0.05
    positives: str = "attributes"  # a caption is a positive of every image with the attributes it names
    seed: int = 0
    pixel_storage: str = "float16"  # 288,000 training images: 6.2 GB of pixels, not 12.4
    threads: int = 2
    device: str = "cpu"
    ks: tuple[int, ...] = (1, 5, 10)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "vision_width", "vision_layers", "steps", "images_per_cell"):
            if (value := getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if self.image_size % self.patch_size:  # CLIP's patch layer would drop the pixels left over
            raise ValueError(f"patch size {self.patch_size} does not divide image size {self.image_size}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is none of {', '.join(ACTIVATIONS)}")
        if self.vision_width % _heads(self.vision_width):
            raise ValueError(f"vision width {self.vision_width} does not split into 32-wide attention heads")


def every_caption() -> list[str]:
    """Every caption the training templates can make (the tokenizer's corpus), sorted. The wild split's
    templates are left out on purpose: their new words stay unknown to the model."""
    texts = set()
    words = dict(
        size=list(synthetic.SIZES),
        colour=list(synthetic.COLOURS),
        shape=list(synthetic.SHAPES),
        position=list(synthetic.POSITION_PHRASES.values()),
        background=list(palette.ACHROMATIC) + list(synthetic.COLOURS),
    )
    for kind, options in templates.TRAINING.items():
        for values in itertools.product(*(words[key] for key in kind)):
            texts.update(template.format(**dict(zip(kind, values))) for template in options)
    return sorted(texts)


def initial_model(recipe: DemoRecipe) -> tuple[CLIPModel, CLIPProcessor]:
    """The untrained model: seeded random weights, word-level tokenizer, the image processor."""
    tokenizer = word_level_tokenizer(every_caption())
    config = CLIPConfig(
        projection_dim=recipe.projection_dim,
        logit_scale_init_value=recipe.logit_scale_init,
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=recipe.text_width,
            intermediate_size=4 * recipe.text_width,
            num_hidden_layers=recipe.text_layers,
            num_attention_heads=_heads(recipe.text_width),
            hidden_act=recipe.activation,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=recipe.vision_width,
            intermediate_size=4 * recipe.vision_width,
            num_hidden_layers=recipe.vision_layers,
            num_attention_heads=_heads(recipe.vision_width),
            hidden_act=recipe.activation,
            image_size=recipe.image_size,
            patch_size=recipe.patch_size,
        ),
    )
    torch.manual_seed(recipe.seed)
    with quiet_transformers():
        model = CLIPModel(config).eval()
    size = recipe.image_size
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, resample=3
    )
    return model, CLIPProcessor(image_processor=processor, tokenizer=tokenizer)


def _stable_report(output: Path, work: Path) -> None:
    """Replace the work folder's temporary path in the report, so that reruns write the same bytes."""
    report = output / "eval_metrics.json"
    text = report.read_text(encoding="utf-8").replace(str(work), "WORK").replace(str(output), "OUT")
    data = json.loads(text)
    data["recipe"] = "clip-train train-demo-model OUT (clip_training/demo.py, DemoRecipe)"
    report.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def train_demo_model(
    output: str | Path, recipe: DemoRecipe = DemoRecipe(), work: str | Path | None = None, progress: bool = True
) -> dict[str, Any]:
    """Generate the data, build the untrained model, fine-tune it, write ``output``; returns the report.
    ``work`` keeps the data set and untrained model there (default: a temporary folder, removed)."""
    output = Path(output)
    owned = work is None
    work = Path(tempfile.mkdtemp(prefix="demo-model-")) if owned else Path(work)
    try:
        spec = synthetic.SplitSpec(
            train=recipe.images_per_cell, validation=recipe.validation_per_cell, wild=recipe.wild_per_cell
        )
        files = synthetic.write_dataset(
            work / "data", seed=recipe.seed, spec=spec, image_size=recipe.data_size, workers=recipe.threads
        )
        model, processor = initial_model(recipe)
        with quiet_transformers():
            model.save_pretrained(str(work / "untrained"))
            processor.save_pretrained(str(work / "untrained"))
        config = FinetuneConfig(
            model=str(work / "untrained"),
            train=str(files["train"]),
            output=str(output),
            eval=[f"test={files['test']}", f"wild={files['wild']}", f"validation={files['validation']}"],
            relevance="attributes",
            positives=recipe.positives,
            ks=list(recipe.ks),
            steps=recipe.steps,
            batch_size=recipe.batch_size,
            lr=recipe.lr,
            weight_decay=recipe.weight_decay,
            warmup=recipe.warmup,
            seed=recipe.seed,
            device=recipe.device,
            threads=recipe.threads,
            pixel_storage=recipe.pixel_storage,
            progress=progress,
        )
        config = replace(config, **recipe.extra)
        report = finetune(config).report
        _stable_report(output, work)
        return report
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)
