"""The synthetic shapes set: seeded to the byte, its test split's colour+shape combinations are never seen
in training, and its wild split draws nothing (style, background, canvas, template) that training draws."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clip_training.demo import every_caption
from clip_training.shapes import backgrounds, palette, scenes, synthetic, templates
from clip_training.vocab import corpus_words


def lines(captions_file: Path) -> list[dict]:
    return [json.loads(line) for line in captions_file.read_text().splitlines()]


def by_image(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["path"], []).append(row)
    return out


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> dict[str, Path]:
    """Every split, one image per cell, on a small base size (wild canvases 56-80 px)."""
    root = tmp_path_factory.mktemp("shapes")
    return synthetic.write_dataset(root, seed=0, spec=synthetic.SplitSpec(train=1, validation=1, test=1), image_size=16)


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path):
    spec = synthetic.SplitSpec(train=1, validation=1, test=1, wild=1)
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        synthetic.write_dataset(tmp_path / name, seed=seed, spec=spec, image_size=16, splits=("validation", "wild"))
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert len(a) > 1000 and a == b
    assert a != c
    assert {k for k in a if k.endswith(".jpg")} and {k for k in a if k.endswith(".png")}  # both formats drawn


# sha-256 of captions.jsonl then each image's decoded pixels, of the test split at seed 0, one image per
# cell, 32 px, as the first demo model's generator wrote it (decoded, so that zlib versions do not matter)
CLASSIC_TEST_FINGERPRINT = "8e71bffd5b509565dc783f341c922c8bd23bb1aae26c8d98c79e169d4f7d0b94"


def test_the_test_split_is_the_classic_one_unchanged(tmp_path):
    """Same images, captions and lines as the first demo model's test split, so models compare on it."""
    path = synthetic.write_split(tmp_path, "test", per_cell=1, seed=0, image_size=32)
    digest = hashlib.sha256(path.read_bytes())
    for image in sorted((path.parent / "images").iterdir()):
        digest.update(np.asarray(Image.open(image)).tobytes())
    assert digest.hexdigest() == CLASSIC_TEST_FINGERPRINT
    rows = lines(path)
    assert len(rows) == 160 * len(synthetic.TEMPLATES)
    assert {r["caption"] for r in rows} <= set(every_caption())  # the classic templates are training ones


def test_held_out_combinations_never_appear_in_training(small_set):
    combos = {
        split: {(line["image_attributes"]["colour"], line["image_attributes"]["shape"]) for line in lines(path)}
        for split, path in small_set.items()
    }
    assert combos["test"] == set(synthetic.held_out_combinations()) and len(combos["test"]) == 16
    assert not combos["test"] & (combos["train"] | combos["validation"])
    # every colour and every shape is still seen in training, just not in these pairings
    assert {c for c, _ in combos["train"]} == set(synthetic.COLOURS)
    assert {s for _, s in combos["train"]} == set(synthetic.SHAPES)
    for colour in synthetic.COLOURS:
        assert sum(c == colour for c, _ in combos["test"]) == 2
    # the wild split asks for every combination, the held-out ones included
    assert len(combos["wild"]) == 64


def test_the_wild_split_shares_no_style_background_canvas_or_template_with_training(small_set):
    train, wild = lines(small_set["train"]), lines(small_set["wild"])
    train_scenes = [r["scene"] for r in train if r["scene"]["style"] != "classic"]
    wild_scenes = [r["scene"] for r in wild]
    assert {s["style"] for s in train_scenes} == {"filled", "outlined"}
    assert {s["style"] for s in wild_scenes} == {"bordered", "shadowed", "soft", "shaded"}
    assert {s["background"] for s in train_scenes} == set(backgrounds.TRAINING)
    assert {s["background"] for s in wild_scenes} == set(backgrounds.WILD)
    assert not set(backgrounds.TRAINING) & set(backgrounds.WILD)
    # wild canvases are larger than any training canvas (shorter side), and wider when not square
    largest = max(min(s["width"], s["height"]) for s in train_scenes)
    assert min(min(s["width"], s["height"]) for s in wild_scenes) > largest
    aspect = lambda s: max(s["width"], s["height"]) / min(s["width"], s["height"])  # noqa: E731
    assert max(aspect(s) for s in train_scenes) <= 1.5
    assert min(aspect(s) for s in wild_scenes if s["width"] != s["height"]) >= 1.5
    assert all(s["format"] == "jpeg" for s in wild_scenes)
    # templates: disjoint, and the captions really come from them
    train_templates = {t for options in templates.TRAINING.values() for t in options}
    wild_templates = {t for options in templates.WILD.values() for t in options}
    assert not train_templates & wild_templates
    assert not {r["caption"] for r in wild} & ({r["caption"] for r in train} | set(every_caption()))
    # some wild words are in no training caption, so the tokenizer never learnt them as words
    assert {"one", "that", "illustration", "simple"} <= set(corpus_words([r["caption"] for r in wild]))
    assert not {"one", "that", "illustration", "simple"} & set(corpus_words(every_caption()))


def test_captions_name_only_attributes_their_image_has(small_set):
    for split in ("train", "validation", "wild"):
        for rows in by_image(lines(small_set[split])).values():
            kinds = [tuple(r["attributes"]) for r in rows]
            assert ("colour", "shape") in kinds
            for row in rows:
                assert all(row["image_attributes"][k] == v for k, v in row["attributes"].items())
                words = row["caption"].replace(",", " ").split()
                assert row["attributes"]["colour"] in words and row["attributes"]["shape"] in words
                distractor = row["scene"].get("distractor")
                if distractor:  # a distractor is another colour and shape, and no caption names it
                    colour, shape = distractor.split()
                    assert colour != row["attributes"]["colour"] and shape != row["attributes"]["shape"]
                    assert shape not in words and (colour not in words or "background" in words)
    wild = by_image(lines(small_set["wild"]))
    assert all(sum(tuple(r["attributes"]) == ("colour", "shape") for r in rows) == 6 for rows in wild.values())


def test_a_backgrounds_colours_are_never_of_the_shapes_colour_family():
    for index in range(400):
        rng = np.random.default_rng([9, index])
        colour = list(synthetic.COLOURS)[index % 8]
        regime = scenes.WILD if index % 2 else scenes.TRAINING
        scene = scenes.sample_scene(colour, synthetic.SHAPES[index % 8], regime, rng, 16)
        for ground in scene.colours:
            assert not palette.in_family(ground, colour), (colour, ground)
            assert palette.contrast(ground, scene.figure.shade) >= palette.MIN_CONTRAST
        assert palette.in_family(scene.figure.shade, colour)
        named = scene.attributes().get("background")
        assert named != colour
    # the family is wide: darker, paler and duller shades of the hue count, other hues do not
    assert palette.in_family((120, 70, 20), "orange")  # brown
    assert palette.in_family((120, 115, 40), "yellow")  # olive
    assert palette.in_family((250, 200, 200), "red") and not palette.in_family((250, 200, 200), "blue")
    assert not palette.in_family((128, 128, 128), "red")


def test_each_colour_has_one_family_and_its_canonical_shade():
    for name, canonical in synthetic.COLOURS.items():
        h, s, v = palette.hsv(canonical)
        box = palette.SHADES[name]
        assert palette._hue_in(h, *box.hue) and box.saturation[0] <= s <= box.saturation[1]
        assert box.value[0] <= v <= box.value[1]
        assert palette.background_name(canonical) == name
        rng = np.random.default_rng(0)
        for _ in range(50):  # every shade of a colour is outside every other colour's shades
            shade = palette.shape_shade(name, rng)
            others = [
                o for o, b in palette.SHADES.items() if o != name and palette._hue_in(palette.hsv(shade)[0], *b.hue)
            ]
            assert not others
    assert palette.background_name((242, 242, 242)) == "white" and palette.background_name((22, 22, 22)) == "black"
    assert palette.background_name((128, 128, 128)) == "gray" and palette.background_name((140, 120, 110)) is None


def test_a_varied_scene_draws_its_shape_in_its_colour_where_its_attributes_say():
    rng = np.random.default_rng(3)
    checked = 0
    while checked < 12:
        scene = scenes.sample_scene("blue", "square", scenes.TRAINING, rng, 64)
        attributes = scene.attributes()
        if scene.style != "filled" or scene.distractor or "position" not in attributes or "size" not in attributes:
            continue
        image = scenes.draw_scene(scene, np.random.default_rng(1))
        pixels = np.asarray(image).astype(int)
        side = min(scene.width, scene.height)
        ox, oy = (scene.width - side) // 2, (scene.height - side) // 2
        near = np.abs(pixels - np.array(scene.figure.shade)).sum(axis=2) < 40
        ys, xs = np.nonzero(near)
        x, y = (xs.mean() - ox) / side, (ys.mean() - oy) / side
        assert (
            scenes.region_of(x, y) == attributes["position"] or abs(x - scene.figure.x) + abs(y - scene.figure.y) < 0.04
        )
        covered = near.sum() / side**2  # a square's area is about (0.82 * diameter)^2
        low, high = scenes.SIZE_RANGES[attributes["size"]]
        assert 0.5 * (0.82 * low) ** 2 < covered < 1.3 * (0.82 * high) ** 2
        assert image.size == (scene.width, scene.height)
        checked += 1


@pytest.mark.parametrize("style", ["filled", "outlined", "bordered", "shadowed", "soft", "shaded"])
def test_every_style_draws_the_shape_over_the_background(style):
    rng = np.random.default_rng(5)
    base = scenes.sample_scene("red", "circle", scenes.TRAINING, rng, 64)
    figure = scenes.Figure("red", "circle", (215, 35, 35), 0.5, 0.5, 0.5, 0.0, 1.0, 0.0)
    scene = scenes.Scene(figure, None, style, True, 0.3, "plain", ((240, 240, 240), (0, 0, 0)), 96, 64, "png", 90)
    pixels = np.asarray(scenes.draw_scene(scene, np.random.default_rng(0))).astype(int)
    red = np.abs(pixels - np.array([215, 35, 35])).sum(axis=2) < 90
    assert red[32, 48] != (style == "outlined")  # the centre is red unless only the outline is drawn
    assert red.sum() > 100 and not red[2, 2] and not red[61, 93]
    assert base.width >= 48


def test_the_classic_shape_is_drawn_in_its_colour_where_its_position_says():
    attributes = dict(size="large", colour="blue", shape="square", position="left", background="white")
    pixels = np.asarray(synthetic.render(attributes, np.random.default_rng(0), 64)).astype(int)
    blue = np.abs(pixels - np.array(synthetic.COLOURS["blue"])).sum(axis=2) < 60
    ys, xs = np.nonzero(blue)
    assert blue.sum() > 300  # a large square covers a good part of the image
    assert xs.mean() < 64 * 0.4 and abs(ys.mean() - 32) < 8


def test_images_open_as_rgb_of_the_size_the_scene_says(small_set):
    rows = by_image(lines(small_set["wild"]))
    for path, (row, *_) in list(rows.items())[:20]:
        image = Image.open(small_set["wild"].parent / path)
        assert image.format == "JPEG" and image.mode == "RGB"
        assert image.size == (row["scene"]["width"], row["scene"]["height"])


def test_drawing_in_parallel_writes_the_same_bytes(tmp_path):
    """Each image has its own seeded generator, so the processes drawing them do not change a byte."""
    for name, workers in (("one", 1), ("two", 2)):
        synthetic.write_split(tmp_path / name, "train", per_cell=3, seed=2, image_size=16, workers=workers)
    one, two = tree_bytes(tmp_path / "one"), tree_bytes(tmp_path / "two")
    assert len(one) == 48 * synthetic.CELLS * 3 + 1 and one == two
