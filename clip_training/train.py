"""The fine-tuning run: load a model directory, train both towers with the CLIP loss, evaluate before and
after on held-out pairs, and write a Hugging Face CLIP directory.

Reproducibility: one seed drives the initial state, the order of images and the caption drawn for each
image in each epoch (a ``torch.Generator`` saved in checkpoints); ``torch.use_deterministic_algorithms``
is on. On the CPU, the same seed, settings, thread count and machine give bit-identical weights. CUDA
runs are deterministic where its kernels allow (``warn_only``), and use autocast in bfloat16 (float16
with a gradient scaler where bfloat16 is not supported).

With ``positives="attributes"`` (pairs files whose lines carry attributes), a caption counts as a
positive of every image in its batch that has the attributes it names (``loss.attribute_positives``).

Each epoch visits every training image once, in a seeded order, with one of its captions drawn at
random; the last incomplete batch is dropped, so every step sees ``batch_size`` distinct images.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from clip_training import export, freezing
from clip_training.data import (
    Pair,
    PairSet,
    attribute_codes,
    encode_images,
    encode_texts,
    read_pairs,
    split_held_out,
    trim,
)
from clip_training.evaluate import EvalSet, build_eval_set, evaluate
from clip_training.loss import MAX_LOGIT_SCALE, attribute_positives, clip_loss
from clip_training.metrics import comparison_table
from clip_training.optim import make_optimizer, make_schedule
from vectorizer_module.models.base import Towers
from vectorizer_module.models.loading import detect, load_towers

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
POSITIVES = ("captions", "attributes")
PIXEL_STORAGE = {"float32": torch.float32, "float16": torch.float16}


@dataclass
class FinetuneConfig:
    """Everything a run depends on (written into the report)."""

    model: str
    train: str
    output: str
    eval: list[str] = field(
        default_factory=list
    )  # held-out pairs files, NAME=PATH or PATH; none: hold out eval_fraction
    eval_fraction: float = 0.1
    image_root: str | None = None
    relevance: str = "auto"
    positives: str = "captions"  # captions: identical texts are positives; attributes: see loss.py
    ks: list[int] = field(default_factory=lambda: [10])
    epochs: float = 1.0
    steps: int | None = None  # overrides epochs
    batch_size: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.1
    warmup: float = 0.05  # fraction of the steps (a value >= 1 is a number of steps)
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    learn_temperature: bool = True
    freeze_text: bool = False
    freeze_vision: bool = False
    freeze_text_layers: int = 0
    freeze_vision_layers: int = 0
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"
    threads: int = 0  # torch CPU threads (0: leave torch's default)
    eval_batch_size: int = 256
    pixel_storage: str = "float32"  # how the training images are held; float16 fits twice as many
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    resume: str | None = None
    progress: bool = True


@dataclass
class FinetuneResult:
    """The trained towers (on the CPU, in eval mode), the learnt temperature, and the report."""

    towers: Towers
    logit_scale: float
    report: dict[str, Any]


@dataclass
class TrainData:
    pairs: PairSet
    pixel_values: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    caption_codes: torch.Tensor | None = None  # attribute codes, with positives by attributes
    image_codes: torch.Tensor | None = None


# -- set-up ---------------------------------------------------------------------------------------------
def seed_everything(seed: int, device: torch.device) -> None:
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")


def apply_freezing(towers: Towers, config: FinetuneConfig) -> None:
    """Freeze by the names the towers give: a whole tower, or its embeddings and first N layers."""
    for tower, whole, layers in (
        (towers.query, config.freeze_text, config.freeze_text_layers),
        (towers.items, config.freeze_vision, config.freeze_vision_layers),
    ):
        freezing.unfreeze(tower)
        if whole:
            freezing.freeze(tower)
        elif layers:
            freezing.freeze_first_layers(tower, layers)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain float32 (always on the CPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def load_train_data(
    pairs: PairSet, towers: Towers, positives: str = "captions", pixel_storage: str = "float32"
) -> TrainData:
    if positives not in POSITIVES:
        raise ValueError(f"unknown positives {positives!r}; choose from {', '.join(POSITIVES)}")
    if pixel_storage not in PIXEL_STORAGE:
        raise ValueError(f"unknown pixel storage {pixel_storage!r}; choose from {', '.join(PIXEL_STORAGE)}")
    ids, mask = encode_texts(towers.query, pairs.captions)
    pixels = encode_images(towers.items, pairs.images, dtype=PIXEL_STORAGE[pixel_storage])
    data = TrainData(pairs, pixels, ids, mask)
    if positives == "attributes":
        data.caption_codes, data.image_codes = attribute_codes(pairs)
    return data


def epoch_order(pairs: PairSet, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(image order, caption index chosen for each image in that order) for one epoch."""
    order = torch.randperm(len(pairs.images), generator=generator)
    draws = torch.rand(len(order), generator=generator, dtype=torch.float64)
    choice = [pairs.image_captions[i][int(d * len(pairs.image_captions[i]))] for i, d in zip(order.tolist(), draws)]
    return order, torch.tensor(choice, dtype=torch.long)


# -- the loop -------------------------------------------------------------------------------------------
class Trainer:
    """The optimisation state of one run: towers, temperature, optimizer, schedule and data order."""

    def __init__(
        self,
        towers: Towers,
        data: TrainData,
        config: FinetuneConfig,
        device: torch.device,
        logit_scale: float = export.DEFAULT_LOGIT_SCALE,
    ) -> None:
        self.towers, self.data, self.config, self.device = towers, data, config, device
        self.steps_per_epoch = len(data.pairs.images) // config.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{len(data.pairs.images)} training images are fewer than one batch of "
                f"{config.batch_size}; lower --batch-size"
            )
        self.total_steps = config.steps or max(1, math.ceil(config.epochs * self.steps_per_epoch))
        warmup = config.warmup if config.warmup >= 1 else config.warmup * self.total_steps
        self.logit_scale = torch.nn.Parameter(
            torch.tensor(float(logit_scale), device=device), requires_grad=config.learn_temperature
        )
        named = [(f"text.{n}", p) for n, p in towers.query.named_parameters()]
        named += [(f"vision.{n}", p) for n, p in towers.items.named_parameters()]
        named.append(("logit_scale", self.logit_scale))
        self.parameters = [p for _, p in named if p.requires_grad]
        if not self.parameters:
            raise ValueError("every parameter is frozen: nothing to train")
        self.optimizer = make_optimizer(named, config.lr, config.weight_decay)
        self.schedule = make_schedule(self.optimizer, self.total_steps, max(1, round(warmup)), config.min_lr_ratio)
        self.amp = autocast_dtype(config.precision, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.order: tuple[torch.Tensor, torch.Tensor] | None = None
        self.losses: list[float] = []

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(image indices, caption indices) of each remaining step."""
        while self.step < self.total_steps:
            position = self.step % self.steps_per_epoch
            if position == 0 or self.order is None:
                self.order = epoch_order(self.data.pairs, self.generator)
            span = slice(position * self.config.batch_size, (position + 1) * self.config.batch_size)
            yield self.order[0][span], self.order[1][span]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp)

    def train_step(self, images: torch.Tensor, captions: torch.Tensor) -> float:
        text, vision = self.towers.query, self.towers.items
        ids, mask = trim(self.data.input_ids[captions], self.data.attention_mask[captions])
        pixels = self.data.pixel_values[images]
        cuda = self.device.type == "cuda"
        ids, mask, pixels, caption_ids = (t.to(self.device, non_blocking=cuda) for t in (ids, mask, pixels, captions))
        pixels = pixels.to(vision.dtype)  # after the copy: float16 storage crosses to a GPU at half the bytes
        positives = None
        if self.data.caption_codes is not None and self.data.image_codes is not None:
            positives = attribute_positives(self.data.caption_codes[captions], self.data.image_codes[images])
        with self.autocast():
            loss = clip_loss(text(ids, mask), vision(pixels), self.logit_scale, caption_ids, positives)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        with torch.no_grad():
            self.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        self.step += 1
        return float(loss.detach())

    # -- checkpoints -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "text": self.towers.query.state_dict(),
            "vision": self.towers.items.state_dict(),
            "logit_scale": self.logit_scale.detach().cpu(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "order": self.order,
            "losses": self.losses,
        }

    def save_checkpoint(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step-{self.step:06d}.pt"
        torch.save(self.state(), path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.towers.query.load_state_dict(state["text"])
        self.towers.items.load_state_dict(state["vision"])
        with torch.no_grad():
            self.logit_scale.copy_(state["logit_scale"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        self.step, self.order, self.losses = state["step"], state["order"], list(state["losses"])

    # -- running -----------------------------------------------------------------------------------------
    def run(self, checkpoint_dir: Path | None) -> None:
        from tqdm import tqdm

        self.towers.query.train(), self.towers.items.train()
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not self.config.progress,
            unit="step",
            dynamic_ncols=True,
            desc="fine-tuning",
        )
        started, first_step, smooth = time.perf_counter(), self.step, None
        for images, captions in self.batches():
            loss = self.train_step(images, captions)
            self.losses.append(loss)
            smooth = loss if smooth is None else 0.9 * smooth + 0.1 * loss
            rate = (self.step - first_step) * self.config.batch_size / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(
                loss=f"{smooth:.4f}",
                lr=f"{self.schedule.get_last_lr()[0]:.2e}",
                T=f"{1 / math.exp(float(self.logit_scale.detach())):.4f}",
                img_s=f"{rate:.0f}",
                refresh=False,
            )
            bar.update(1)
            if checkpoint_dir and self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                self.save_checkpoint(checkpoint_dir)
        bar.close()
        self.towers.query.eval(), self.towers.items.eval()


# -- the whole run --------------------------------------------------------------------------------------
def eval_name(item: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` (named after its folder) -> (name, path)."""
    name, sep, path = item.partition("=")
    if sep and name and "/" not in name and not Path(item).exists():
        return name, path
    return Path(item).parent.name or Path(item).stem, item


def _eval_sets(config: FinetuneConfig, train_pairs: list[Pair]) -> tuple[list[Pair], dict[str, PairSet]]:
    """(training pairs, named evaluation sets): the --eval files, or a held-out part of the training pairs."""
    if config.eval:
        named = dict(eval_name(item) for item in config.eval)
        return train_pairs, {name: PairSet.from_pairs(read_pairs(p, config.image_root)) for name, p in named.items()}
    kept, held = split_held_out(train_pairs, config.eval_fraction, config.seed)
    return kept, {"held-out": PairSet.from_pairs(held)}


def _print_tables(results: dict[str, Any], ks: Sequence[int]) -> None:
    for name, result in results.items():
        for group, scores in result["groups"].items():
            title = (
                f"\n{name}: {group} ({scores['after']['queries']} queries, {result['gallery']} images, "
                f"relevance by {result['relevance']})"
            )
            print(comparison_table(scores["before"], scores["after"], ks, title))


def finetune(config: FinetuneConfig) -> FinetuneResult:
    """Run the whole fine-tuning. The report is also written as ``eval_metrics.json`` in the output
    directory, without the timing, so that a rerun writes the same bytes."""
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {config.device}: torch {torch.__version__} sees no CUDA device")
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, device)
    source = detect(config.model)
    if source.family != "clip":  # the output is one transformers CLIPModel
        raise ValueError(
            f"{config.model} is a {source.family} model; fine-tuning writes a CLIP directory and "
            "takes CLIP models only (Hugging Face, sentence-transformers or reference-image CLIP)"
        )
    towers = load_towers(source)
    apply_freezing(towers, config)
    loading = time.perf_counter()
    train_pairs, eval_pairs = _eval_sets(config, read_pairs(config.train, config.image_root))
    data = load_train_data(PairSet.from_pairs(train_pairs), towers, config.positives, config.pixel_storage)
    eval_sets: list[EvalSet] = [
        build_eval_set(name, pairs, towers.query, towers.items, config.relevance) for name, pairs in eval_pairs.items()
    ]
    print(
        f"data: {len(data.pairs.images)} training images, {len(data.pairs.pairs)} pairs, "
        f"{len(data.pairs.captions)} distinct captions; evaluation: "
        + ", ".join(f"{s.name} ({s.sizes['queries']} queries, {s.sizes['gallery']} images)" for s in eval_sets)
        + f"; encoded in {time.perf_counter() - loading:.1f} s",
        flush=True,
    )
    for tower in (towers.query, towers.items):
        tower.to(device)
    before = {s.name: evaluate(s, towers.query, towers.items, config.ks, config.eval_batch_size) for s in eval_sets}
    trainer = Trainer(towers, data, config, device, export.read_logit_scale(source))
    if config.resume:
        trainer.load_checkpoint(config.resume)
    checkpoint_dir = Path(config.checkpoint_dir or f"{config.output}-checkpoints") if config.checkpoint_every else None
    started = time.perf_counter()
    trainer.run(checkpoint_dir)
    seconds = time.perf_counter() - started
    after = {s.name: evaluate(s, towers.query, towers.items, config.ks, config.eval_batch_size) for s in eval_sets}
    for tower in (towers.query, towers.items):
        tower.to("cpu")
    logit_scale = float(trainer.logit_scale.detach().cpu())
    export.save_clip_directory(towers.query, towers.items, logit_scale, config.output)
    results = {
        s.name: {
            "relevance": s.relevance,
            **s.sizes,
            "groups": {g: {"before": before[s.name][g], "after": after[s.name][g]} for g in s.groups},
        }
        for s in eval_sets
    }
    report = {
        # the settings that shape the weights; not whether a progress bar was drawn
        "config": {k: v for k, v in asdict(config).items() if k != "progress"},
        "training": {
            "steps": trainer.step,
            "steps_per_epoch": trainer.steps_per_epoch,
            "images": len(data.pairs.images),
            "pairs": len(data.pairs.pairs),
            "first_loss": trainer.losses[0] if trainer.losses else None,
            "last_loss": trainer.losses[-1] if trainer.losses else None,
            "final_logit_scale": logit_scale,
            "trainable_parameters": sum(p.numel() for p in trainer.parameters),
        },
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(device),
            "threads": torch.get_num_threads(),
        },
        "eval": results,
    }
    (Path(config.output) / "eval_metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _print_tables(results, config.ks)
    print(
        f"\ntrained {trainer.step} steps of {config.batch_size} in {seconds:.1f} s "
        f"({trainer.step * config.batch_size / max(seconds, 1e-9):.0f} images/s) on {device}; "
        f"wrote {config.output}",
        flush=True,
    )
    report["seconds"] = seconds
    return FinetuneResult(towers, logit_scale, report)
