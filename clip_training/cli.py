"""The ``clip-train`` command: everything that makes or trains a model, apart from the service.

``clip-train make-random-model OUT`` writes a random-weight CLIP (or SigLIP) for trying things out;
``finetune`` trains a model on image-caption pairs and reports retrieval metrics before and after;
``make-shapes-data`` writes the synthetic shapes set; ``train-demo-model`` rebuilds the built-in demo
model; ``score-shapes`` scores a model on several fresh draws of a shapes split.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vectorizer_module import __version__

if TYPE_CHECKING:  # the commands import torch only when they run
    from clip_training.demo import DemoRecipe


def _make_random_model(argv: Sequence[str]) -> int:
    from clip_training.random_models import clip as random_clip

    parser = argparse.ArgumentParser(
        prog="clip-train make-random-model",
        description="Write a CLIP model with random weights (real architecture, byte-level tokenizer). "
        "Its vectors mean nothing; it is for trying the service and for tests and benchmarks.",
    )
    parser.add_argument("output", help="directory to write")
    parser.add_argument("--arch", choices=sorted(random_clip.ARCHITECTURES), default="tiny")
    parser.add_argument("--layout", choices=random_clip.LAYOUTS, default="huggingface")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--family",
        choices=("clip", "siglip", "siglip2"),
        default="clip",
        help="siglip / siglip2: a tiny random SigLIP / SigLIP 2 NaFlex in the Hugging Face layout "
        "(--arch and --layout ignored)",
    )
    args = parser.parse_args(argv)
    if args.family in ("siglip", "siglip2"):
        from clip_training.random_models.siglip import save_random_model as save_random_siglip

        path = save_random_siglip(args.output, args.seed, naflex=args.family == "siglip2")
        print(f"wrote a random tiny {'SigLIP 2 NaFlex' if args.family == 'siglip2' else 'SigLIP'} to {path}")
        return 0
    path = random_clip.save_random_model(args.output, args.arch, args.layout, args.seed)
    print(f"wrote a random {args.arch} CLIP in the {args.layout} layout to {path}")
    return 0


def _finetune_parser() -> argparse.ArgumentParser:
    from clip_training.evaluate import RELEVANCE_MODES
    from clip_training.train import PIXEL_STORAGE, POSITIVES, PRECISIONS, FinetuneConfig

    d = FinetuneConfig(model="", train="", output="")
    parser = argparse.ArgumentParser(
        prog="clip-train finetune",
        description="Fine-tune a CLIP model on image-caption pairs (symmetric contrastive loss, learnable "
        "temperature, AdamW with warm-up and cosine decay), evaluate text-to-image retrieval on "
        "held-out pairs before and after, and write a Hugging Face CLIP directory.",
    )
    add = parser.add_argument
    add("--model", required=True, help="model directory, in any layout the service serves")
    add(
        "--train",
        required=True,
        help="pairs file: .csv with path,caption columns, or .jsonl with path and "
        "caption (and optionally attributes, image_attributes)",
    )
    add("--output", required=True, help="directory to write (Hugging Face CLIP layout, plus eval_metrics.json)")
    add(
        "--eval",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="held-out pairs file to evaluate on (repeatable); without it --eval-fraction of the training "
        "images are held out",
    )
    add("--eval-fraction", type=float, default=d.eval_fraction)
    add("--image-root", help="folder that relative image paths start from (default: the pairs file's folder)")
    add(
        "--relevance",
        choices=RELEVANCE_MODES,
        default=d.relevance,
        help="pairs: a caption's own image(s) are relevant; attributes: every image with the attributes the "
        "caption names; auto: attributes when the file has them",
    )
    add(
        "--positives",
        choices=POSITIVES,
        default=d.positives,
        help="captions: identical captions in a batch are positives of each other; attributes: a caption is a "
        "positive of every image in the batch with the attributes it names (lines need attributes)",
    )
    add("--k", type=int, nargs="+", default=d.ks, dest="ks", help="cut-offs of the @k metrics (default: 10)")
    add("--epochs", type=float, default=d.epochs)
    add("--steps", type=int, help="number of optimizer steps (overrides --epochs)")
    add("--batch-size", type=int, default=d.batch_size)
    add("--lr", type=float, default=d.lr, help="peak learning rate")
    add("--weight-decay", type=float, default=d.weight_decay)
    add("--warmup", type=float, default=d.warmup, help="warm-up: a fraction of the steps, or a number of steps (>= 1)")
    add("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="learning rate at the end, relative to the peak")
    add("--grad-clip", type=float, default=d.grad_clip, help="gradient norm clip (0: off)")
    add("--fixed-temperature", dest="learn_temperature", action="store_false", help="do not learn the temperature")
    add("--freeze-text", action="store_true", help="train the vision tower only")
    add("--freeze-vision", action="store_true", help="train the text tower only")
    add("--freeze-text-layers", type=int, default=0, metavar="N", help="freeze the text embeddings and first N layers")
    add(
        "--freeze-vision-layers",
        type=int,
        default=0,
        metavar="N",
        help="freeze the vision embeddings and first N layers",
    )
    add("--seed", type=int, default=d.seed)
    add("--device", default=d.device, help="cpu, cuda or cuda:N")
    add(
        "--precision",
        choices=PRECISIONS,
        default=d.precision,
        help="autocast on CUDA (auto: bfloat16 where supported, else float16); the CPU always trains in float32",
    )
    add(
        "--threads",
        type=int,
        default=d.threads,
        help="torch CPU threads (0: torch's default); fix it for bit-identical reruns",
    )
    add("--eval-batch-size", type=int, default=d.eval_batch_size)
    add(
        "--pixel-storage",
        choices=list(PIXEL_STORAGE),
        default=d.pixel_storage,
        help="how the training images are held in memory (float16: half the memory, for large sets)",
    )
    add("--checkpoint-every", type=int, default=0, metavar="STEPS", help="save a resumable checkpoint every STEPS")
    add("--checkpoint-dir", help="where checkpoints go (default: OUTPUT-checkpoints)")
    add("--resume", metavar="CHECKPOINT", help="continue from a checkpoint of the same settings")
    add("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def _finetune(argv: Sequence[str]) -> int:
    from dataclasses import fields

    from clip_training.data import PairsError
    from clip_training.train import FinetuneConfig, finetune
    from vectorizer_module.errors import ModelLayoutError

    args = vars(_finetune_parser().parse_args(argv))
    config = FinetuneConfig(**{f.name: args[f.name] for f in fields(FinetuneConfig) if f.name in args})
    try:
        finetune(config)
    except (ModelLayoutError, PairsError, ValueError, RuntimeError) as exc:
        print(f"clip-train finetune: {exc}", file=sys.stderr)
        return 2
    return 0


def _make_shapes_data(argv: Sequence[str]) -> int:
    from clip_training.shapes import synthetic

    parser = argparse.ArgumentParser(
        prog="clip-train make-shapes-data",
        description="Write the seeded synthetic shapes set: train, validation, test and wild splits (the test "
        "split holds colour+shape combinations never seen in training, drawn the classic way; the wild split "
        "draws styles, backgrounds, canvas sizes and captions training never uses), each a folder of images "
        "and a captions.jsonl for finetune.",
    )
    parser.add_argument("output", help="directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument(
        "--train-per-cell",
        type=int,
        default=synthetic.SplitSpec.train,
        help="training images per colour+shape combination, in tens (sizes and positions are drawn continuously)",
    )
    parser.add_argument("--splits", nargs="+", choices=synthetic.SPLITS, default=list(synthetic.SPLITS))
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes drawing the images (the bytes written do not depend on it; default: the CPU count)",
    )
    args = parser.parse_args(argv)
    spec = synthetic.SplitSpec(train=args.train_per_cell)
    files = synthetic.write_dataset(args.output, args.seed, spec, args.image_size, args.splits, args.workers)
    for split, path in files.items():
        print(f"{split}: {path}")
    return 0


def _train_demo_parser() -> argparse.ArgumentParser:
    from clip_training.demo import ACTIVATIONS, DemoRecipe
    from clip_training.train import PIXEL_STORAGE

    recipe = DemoRecipe()
    parser = argparse.ArgumentParser(
        prog="clip-train train-demo-model",
        description="Rebuild the built-in demo model from scratch: write the synthetic shapes set, an untrained "
        "small CLIP, and fine-tune it on the CPU. With the defaults (2 threads) it reproduces "
        "vectorizer_module/default_model bit for bit on the same machine and torch version; the other "
        "flags try a variant of the recipe.",
    )
    add = parser.add_argument
    add("output", help="directory to write the model to")
    add("--work", help="keep the data set and the untrained model here (default: a temporary folder)")
    add("--threads", type=int, default=recipe.threads)
    add("--device", default=recipe.device)
    add("--steps", type=int, default=recipe.steps)
    add("--image-size", type=int, default=recipe.image_size, help="the model's input side, in pixels")
    add("--patch-size", type=int, default=recipe.patch_size, help="the vision tower's patch side; divides --image-size")
    add("--vision-width", type=int, default=recipe.vision_width)
    add("--vision-layers", type=int, default=recipe.vision_layers)
    add(
        "--images-per-cell",
        type=int,
        default=recipe.images_per_cell,
        help="training images per colour+shape combination, in tens",
    )
    add("--pixel-storage", choices=list(PIXEL_STORAGE), default=recipe.pixel_storage)
    add("--activation", choices=list(ACTIVATIONS), default=recipe.activation, help="both towers' MLP activation")
    add("--no-progress", dest="progress", action="store_false")
    return parser


def demo_recipe(args: argparse.Namespace) -> DemoRecipe:
    """The ``DemoRecipe`` that ``train-demo-model``'s flags ask for (the defaults: the shipped one)."""
    from dataclasses import fields

    from clip_training.demo import DemoRecipe

    given = vars(args)
    return DemoRecipe(**{f.name: given[f.name] for f in fields(DemoRecipe) if f.name in given})


def _train_demo_model(argv: Sequence[str]) -> int:
    from clip_training.demo import train_demo_model

    args = _train_demo_parser().parse_args(argv)
    try:
        recipe = demo_recipe(args)
    except ValueError as exc:
        print(f"clip-train train-demo-model: {exc}", file=sys.stderr)
        return 2
    train_demo_model(args.output, recipe, work=args.work, progress=args.progress)
    return 0


def _score_shapes(argv: Sequence[str]) -> int:
    from clip_training.draws import DEFAULT_SEEDS, mean_score, score_draws
    from clip_training.shapes import synthetic
    from vectorizer_module.errors import ModelLayoutError
    from vectorizer_module.models.loading import builtin_demo_source, detect, load_towers

    parser = argparse.ArgumentParser(
        prog="clip-train score-shapes",
        description="Score a model on several freshly drawn splits of the synthetic shapes set (text-to-image "
        "retrieval, relevance by attributes) and print each draw and the mean: one draw of the wild split "
        "moves by several points from seed to seed, so compare models on several.",
    )
    parser.add_argument("--model", help="model directory (default: the built-in demo model)")
    parser.add_argument("--split", choices=synthetic.SPLITS, default="wild")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="one draw per seed")
    parser.add_argument("--per-cell", type=int, default=1, help="images per cell of the split (see make-shapes-data)")
    parser.add_argument("--image-size", type=int, default=64, help="the base size the split is drawn at")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        towers = load_towers(detect(args.model) if args.model else builtin_demo_source())
    except ModelLayoutError as exc:
        print(f"clip-train score-shapes: {exc}", file=sys.stderr)
        return 2
    columns = [("colour+shape", "hit@1"), ("colour+shape", "hit@5"), ("all", "hit@1")]
    print(f"{args.split} split, {towers.info.name}")
    print(f"{'seed':>10} {'images':>7}  " + "  ".join(f"{g} {m}".rjust(18) for g, m in columns))
    scores = []
    for score in score_draws(towers.query, towers.items, args.split, args.seeds, args.per_cell, args.image_size):
        scores.append(score)
        cells = "  ".join(f"{score.metrics[g][m]:18.3f}" for g, m in columns)
        print(f"{score.seed:>10} {score.gallery:>7}  {cells}", flush=True)
    print(f"{'mean':>10} {'':>7}  " + "  ".join(f"{mean_score(scores, g, m):18.3f}" for g, m in columns))
    return 0


COMMANDS = {
    "make-random-model": _make_random_model,
    "finetune": _finetune,
    "make-shapes-data": _make_shapes_data,
    "train-demo-model": _train_demo_model,
    "score-shapes": _score_shapes,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(
            prog="clip-train",
            description="Make, train and score models for clip-vectorizer (see COMMAND --help).",
        )
        parser.add_argument("--version", action="version", version=f"clip-train {__version__}")
        parser.add_argument("command", choices=list(COMMANDS))
        parser.parse_args(argv[:1])
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
