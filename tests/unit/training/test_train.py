"""A few fine-tuning steps on the tiny random CLIP: the loss falls, only unfrozen parameters move, the
written directory serves the same vectors, and a seed reproduces the weights bit for bit."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPModel

from clip_training.data import PairSet, encode_images, read_pairs, trim
from clip_training.export import read_logit_scale
from clip_training.loss import clip_loss
from clip_training.shapes import synthetic
from clip_training.train import FinetuneConfig, finetune, load_train_data
from tests.reference import ReferenceClip
from vectorizer_module.models.loading import detect, load_towers
from vectorizer_module.preprocessing.images import decode_image

TEXTS = ["a red circle", "a large blue square on the left", "something else entirely"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    return {split: synthetic.write_split(root, split, per_cell=1, seed=3, image_size=32) for split in ("train", "test")}


@pytest.fixture()
def config(tiny_model, shapes, tmp_path) -> FinetuneConfig:
    return FinetuneConfig(
        model=str(tiny_model),
        train=str(shapes["train"]),
        eval=[f"test={shapes['test']}"],
        output=str(tmp_path / "out"),
        ks=[1, 5],
        steps=12,
        batch_size=32,
        lr=2e-3,
        warmup=2,
        seed=5,
        threads=1,
        progress=False,
    )


def fixed_batch_loss(model_dir: Path, train_file: Path) -> float:
    """The CLIP loss of one fixed batch (the first 64 pairs, one caption each) under a model directory."""
    source = detect(model_dir)
    towers = load_towers(source)
    pairs = PairSet.from_pairs(read_pairs(train_file))
    data = load_train_data(pairs, towers)
    images = torch.arange(64)
    captions = torch.tensor([pairs.image_captions[i][0] for i in range(64)])
    with torch.inference_mode():
        ids, mask = trim(data.input_ids[captions], data.attention_mask[captions])
        loss = clip_loss(
            towers.query(ids, mask),
            towers.items(data.pixel_values[images]),
            torch.tensor(read_logit_scale(source)),
            captions,
        )
    return float(loss)


def state(model_dir: Path) -> dict[str, torch.Tensor]:
    towers = load_towers(detect(model_dir))
    return {
        **{f"text.{k}": v for k, v in towers.query.state_dict().items()},
        **{f"vision.{k}": v for k, v in towers.items.state_dict().items()},
    }


def test_training_lowers_the_loss_and_the_directory_serves_the_trained_vectors(config, tiny_model, shapes):
    result = finetune(replace(config, steps=20))
    out = Path(config.output)
    assert fixed_batch_loss(out, shapes["train"]) < fixed_batch_loss(tiny_model, shapes["train"]) - 0.05
    assert result.report["training"]["steps"] == 20
    assert (out / "eval_metrics.json").is_file()
    groups = result.report["eval"]["test"]["groups"]
    assert {"all", "colour+shape", "size+colour+shape+position"} <= set(groups)
    assert set(groups["all"]["before"]) >= {"hit@1", "hit@5", "precision@5", "recall@5", "ndcg@5", "mrr", "ap"}

    # the service's loader reads the written directory and gives the in-memory model's vectors
    loaded = load_towers(detect(out))
    assert loaded.info.layout == "huggingface"
    assert torch.allclose(loaded.query.embed(TEXTS), result.towers.query.embed(TEXTS), atol=1e-6)
    images = [
        synthetic.render(
            dict(size="large", colour="red", shape="star", position="left", background="gray"),
            np.random.default_rng(1),
            32,
        )
    ]
    assert torch.allclose(loaded.items.embed(images), result.towers.items.embed(images), atol=1e-6)
    assert read_logit_scale(detect(out)) == pytest.approx(result.logit_scale)

    # and so does transformers' own CLIPModel
    reference = ReferenceClip(out)
    assert np.allclose(reference.texts(TEXTS), loaded.query.embed(TEXTS).numpy(), atol=1e-5)
    assert float(CLIPModel.from_pretrained(str(out)).logit_scale.detach()) == pytest.approx(result.logit_scale)


def test_a_frozen_tower_does_not_move(config, tiny_model):
    finetune(replace(config, freeze_vision=True))
    before, after = state(tiny_model), state(Path(config.output))
    vision = [k for k in before if k.startswith("vision.")]
    text = [k for k in before if k.startswith("text.")]
    assert all(torch.equal(before[k], after[k]) for k in vision)
    assert sum(not torch.equal(before[k], after[k]) for k in text) > len(text) // 2


def test_freezing_the_first_layers_keeps_them_and_trains_the_rest(config, tiny_model):
    finetune(replace(config, freeze_text_layers=1))
    before, after = state(tiny_model), state(Path(config.output))
    frozen = [
        k
        for k in before
        if k.startswith(("text.model.text_model.embeddings.", "text.model.text_model.encoder.layers.0."))
    ]
    later = [k for k in before if k.startswith("text.model.text_model.encoder.layers.1.")]
    assert frozen and later
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in later if k.endswith("weight"))


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not(config, tmp_path):
    outputs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        finetune(replace(config, output=str(tmp_path / name), seed=seed))
        outputs.append((tmp_path / name / "model.safetensors").read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_resuming_from_a_checkpoint_ends_where_an_uninterrupted_run_ends(config, tmp_path):
    whole = replace(
        config, output=str(tmp_path / "whole"), checkpoint_every=5, checkpoint_dir=str(tmp_path / "checkpoints")
    )
    finetune(whole)
    checkpoint = tmp_path / "checkpoints" / "step-000005.pt"
    assert checkpoint.is_file()
    finetune(replace(config, output=str(tmp_path / "resumed"), resume=str(checkpoint)))
    assert (tmp_path / "whole" / "model.safetensors").read_bytes() == (
        tmp_path / "resumed" / "model.safetensors"
    ).read_bytes()


def test_held_out_fraction_is_used_without_eval_files(config):
    result = finetune(replace(config, eval=[], eval_fraction=0.25, steps=2))
    held_out = result.report["eval"]["held-out"]
    assert held_out["gallery"] == 120 and result.report["training"]["images"] == 360


def test_the_command_line_trains_from_a_csv_and_prints_the_table(tiny_model, shapes, tmp_path, capsys):
    from clip_training.cli import main

    rows = [json.loads(line) for line in shapes["train"].read_text().splitlines()][:400]
    csv_file = shapes["train"].parent / "pairs.csv"
    with csv_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["caption", "path", "ignored"])
        writer.writerows([row["caption"], row["path"], "x"] for row in rows)
    out = tmp_path / "cli-out"
    code = main(
        [
            "finetune",
            "--model",
            str(tiny_model),
            "--train",
            str(csv_file),
            "--output",
            str(out),
            "--steps",
            "3",
            "--batch-size",
            "16",
            "--k",
            "1",
            "3",
            "--threads",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "held-out: all" in printed and "relevance by pairs" in printed and "hit@3" in printed
    report = json.loads((out / "eval_metrics.json").read_text())
    assert report["eval"]["held-out"]["relevance"] == "pairs" and report["training"]["steps"] == 3
    assert detect(out).layout == "huggingface"


def test_images_encoded_in_batches_are_the_towers_own_pixels_in_order(tiny_model, shapes):
    towers = load_towers(detect(tiny_model))
    paths = PairSet.from_pairs(read_pairs(shapes["train"])).images[:23]
    whole = encode_images(towers.items, paths, batch_size=5)  # a last batch of 3
    one_by_one = [
        towers.items.preprocess([decode_image(p.read_bytes(), str(p), max_pixels=10**6)])["pixel_values"][0]
        for p in paths
    ]
    assert whole.shape[0] == len(paths)
    assert all(torch.equal(row, expected) for row, expected in zip(whole, one_by_one))
    assert not torch.equal(whole[0], whole[1])


def test_float16_storage_holds_the_pixels_to_half_precision_and_trains_like_float32(config, tiny_model, shapes):
    towers = load_towers(detect(tiny_model))
    pairs = PairSet.from_pairs(read_pairs(shapes["train"]))
    full = load_train_data(pairs, towers).pixel_values
    half = load_train_data(pairs, towers, pixel_storage="float16").pixel_values
    assert full.dtype == torch.float32 and half.dtype == torch.float16
    assert half.element_size() * half.nelement() == full.element_size() * full.nelement() // 2
    assert torch.equal(half, full.to(torch.float16))

    a = finetune(replace(config, output=str(Path(config.output) / "a"))).towers.items
    b = finetune(replace(config, output=str(Path(config.output) / "b"), pixel_storage="float16")).towers.items
    images = [
        synthetic.render(
            dict(size="large", colour="red", shape="star", position="left", background="gray"),
            np.random.default_rng(1),
            32,
        )
    ]
    untrained = towers.items.embed(images)
    # the same run up to the pixels' rounding: far nearer to each other than to where they started
    gap = (a.embed(images) - b.embed(images)).norm()
    assert gap > 0
    assert gap < 0.1 * (a.embed(images) - untrained).norm()


def test_an_unknown_pixel_storage_is_refused(config):
    with pytest.raises(ValueError, match="pixel storage 'int8'"):
        finetune(replace(config, pixel_storage="int8"))


def test_a_pairs_file_without_the_needed_columns_is_refused_with_what_is_missing(tmp_path):
    from clip_training.data import PairsError

    bad = tmp_path / "pairs.csv"
    bad.write_text("image,text\na.png,a cat\n")
    with pytest.raises(PairsError, match="lacks caption, path"):
        read_pairs(bad)
    missing = tmp_path / "pairs.jsonl"
    missing.write_text(json.dumps({"path": "nowhere.png", "caption": "a cat"}) + "\n")
    with pytest.raises(PairsError, match="nowhere.png does not exist"):
        read_pairs(missing)
    (tmp_path / "here.png").write_bytes(b"")
    lines = [("here.png", "a cat"), ("here.png", "a dog"), ("gone.png", "a cat")]
    missing.write_text("".join(json.dumps({"path": p, "caption": c}) + "\n" for p, c in lines))
    with pytest.raises(PairsError, match=r"pairs.jsonl:3: image .*gone.png does not exist"):
        read_pairs(missing)
    missing.write_text("".join(json.dumps({"path": p, "caption": c}) + "\n" for p, c in lines[:2]))
    assert [pair.image for pair in read_pairs(missing)] == [(tmp_path / "here.png").resolve()] * 2


@pytest.mark.parametrize("layout", ["sentence-transformers-legacy", "reference-image-st"])
def test_any_served_layout_can_be_fine_tuned_into_a_hugging_face_directory(config, tiny_model, tmp_path, layout):
    from clip_training.random_models.clip import write_layout

    source_dir = write_layout(tiny_model, tmp_path / layout, layout)
    result = finetune(replace(config, model=str(source_dir), steps=2))
    assert detect(source_dir).layout != "huggingface" and detect(config.output).layout == "huggingface"
    assert result.logit_scale == pytest.approx(read_logit_scale(detect(tiny_model)), abs=0.01)


def test_positives_by_attributes_take_every_image_a_caption_describes():
    from clip_training.data import Pair, attribute_codes
    from clip_training.loss import attribute_positives

    images = {
        "a.png": dict(size="large", colour="red", shape="circle", position="left"),
        "b.png": dict(colour="red", shape="circle"),  # no size or position to name
        "c.png": dict(size="large", colour="blue", shape="circle", position="left"),
    }
    captions = {
        "a red circle": dict(colour="red", shape="circle"),
        "a photo of a red circle": dict(colour="red", shape="circle"),
        "a large red circle": dict(size="large", colour="red", shape="circle"),
        "a circle on the left": dict(shape="circle", position="left"),
    }
    pairs = [
        Pair(Path(image), caption, named, has)
        for image, has in images.items()
        for caption, named in captions.items()
        if all(has.get(k) == v for k, v in named.items())
    ]
    pair_set = PairSet.from_pairs(pairs)
    caption_codes, image_codes = attribute_codes(pair_set)
    relevant = attribute_positives(caption_codes, image_codes)
    order = [str(p) for p in pair_set.images]
    wanted = {
        "a red circle": {"a.png", "b.png"},
        "a photo of a red circle": {"a.png", "b.png"},
        "a large red circle": {"a.png"},
        "a circle on the left": {"a.png", "c.png"},
    }
    for row, caption in enumerate(pair_set.captions):
        assert {order[i] for i in relevant[row].nonzero().flatten().tolist()} == wanted[caption]


def test_positives_by_attributes_stop_the_loss_from_parting_two_wordings_of_one_query():
    from clip_training.loss import attribute_positives

    # two red-circle pictures with two wordings of "a red circle", and a blue square: embedded together
    # (both wordings and both pictures alike) or parted (each wording with its own picture only)
    together = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    parted = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    codes = torch.tensor([[0, 0], [0, 0], [1, 1]])  # colour, shape
    scale, ids = torch.tensor(math.log(100.0)), torch.tensor([0, 1, 2])
    positives = attribute_positives(codes, codes)
    assert positives.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    # as strangers, the loss prefers the wordings parted; as positives, together
    assert clip_loss(parted, parted, scale, ids) < clip_loss(together, together, scale, ids) - 0.3
    assert clip_loss(together, together, scale, ids, positives) < clip_loss(parted, parted, scale, ids, positives) - 0.3


def test_positives_by_attributes_need_attributes(config, shapes, tmp_path):
    from clip_training.data import PairsError

    rows = [json.loads(line) for line in shapes["train"].read_text().splitlines()]
    plain = shapes["train"].parent / "no-attributes.jsonl"
    plain.write_text("".join(json.dumps({"path": r["path"], "caption": r["caption"]}) + "\n" for r in rows))
    with pytest.raises(PairsError, match="need attributes"):
        finetune(replace(config, train=str(plain), positives="attributes", steps=2))
    with pytest.raises(ValueError, match="unknown positives"):
        finetune(replace(config, positives="labels", steps=2))
    result = finetune(replace(config, positives="attributes", steps=2))
    assert result.report["config"]["positives"] == "attributes"
