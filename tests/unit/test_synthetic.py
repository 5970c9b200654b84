"""The synthetic shapes set: seeded to the byte, and its test split's colour+shape combinations are
never seen in training."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from vectorizer_module.finetune import synthetic


def lines(captions_file: Path) -> list[dict]:
    return [json.loads(line) for line in captions_file.read_text().splitlines()]


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path):
    spec = synthetic.SplitSpec(train=1, validation=1, test=1)
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        synthetic.write_dataset(tmp_path / name, seed=seed, spec=spec, image_size=32, splits=("validation", "test"))
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert len(a) > 600 and a == b
    assert a.keys() == c.keys() and a != c


def test_test_combinations_never_appear_in_training(tmp_path):
    files = synthetic.write_dataset(
        tmp_path, seed=0, spec=synthetic.SplitSpec(train=1, validation=1, test=1), image_size=32
    )
    combos = {
        split: {(line["image_attributes"]["colour"], line["image_attributes"]["shape"]) for line in lines(path)}
        for split, path in files.items()
    }
    assert combos["test"] == set(synthetic.held_out_combinations()) and len(combos["test"]) == 16
    assert not combos["test"] & (combos["train"] | combos["validation"])
    # every colour and every shape is still seen in training, just not in these pairings
    assert {c for c, _ in combos["train"]} == set(synthetic.COLOURS)
    assert {s for _, s in combos["train"]} == set(synthetic.SHAPES)
    # each held-out colour has a held-out sibling shape, so a test query has same-colour distractors
    for colour in synthetic.COLOURS:
        assert sum(c == colour for c, _ in combos["test"]) == 2
    assert ("red", "circle") in combos["train"] and ("blue", "square") in combos["train"]


def test_captions_name_only_attributes_their_image_has(tmp_path):
    path = synthetic.write_split(tmp_path, "test", per_cell=1, seed=0, image_size=32)
    rows = lines(path)
    assert len(rows) == 160 * len(synthetic.TEMPLATES)
    for row in rows:
        assert {"colour", "shape"} <= set(row["attributes"])
        assert all(row["image_attributes"][k] == v for k, v in row["attributes"].items())
        words = row["caption"].split()
        assert row["attributes"]["colour"] in words and row["attributes"]["shape"] in words
    image = Image.open(tmp_path / "test" / rows[0]["path"])
    assert image.size == (32, 32) and image.mode == "RGB"


def test_the_shape_is_drawn_in_its_colour_where_its_position_says():
    attributes = dict(size="large", colour="blue", shape="square", position="left", background="white")
    pixels = np.asarray(synthetic.render(attributes, np.random.default_rng(0), 64)).astype(int)
    blue = np.abs(pixels - np.array(synthetic.COLOURS["blue"])).sum(axis=2) < 60
    ys, xs = np.nonzero(blue)
    assert blue.sum() > 300  # a large square covers a good part of the image
    assert xs.mean() < 64 * 0.4 and abs(ys.mean() - 32) < 8
