"""The shipped demo model: it loads as the built-in model, and on a freshly generated test split (colour+
shape combinations it never saw in training) it finds the named colour and shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from vectorizer_module.finetune import synthetic
from vectorizer_module.finetune.data import PairSet, read_pairs
from vectorizer_module.finetune.demo import every_caption
from vectorizer_module.finetune.evaluate import build_eval_set, evaluate
from vectorizer_module.finetune.vocab import word_level_tokenizer
from vectorizer_module.models.loading import BUILTIN_DEMO_DIR, builtin_demo_source, load_towers

FRESH_SEED = 20240611  # not the seed the model was trained on: every image is new to it


@pytest.fixture(scope="module")
def demo():
    return load_towers(builtin_demo_source())


def test_the_builtin_model_says_what_it_is(demo):
    assert demo.info.builtin_demo and demo.info.name == "clip-vectorizer-demo-shapes"
    assert demo.info.layout == "huggingface" and demo.info.image_size == 64
    size = sum(p.stat().st_size for p in BUILTIN_DEMO_DIR.iterdir() if p.is_file())
    assert size <= 25 * 1024 * 1024


def test_quality_bar_on_unseen_colour_shape_combinations(demo, tmp_path):
    captions = synthetic.write_split(tmp_path, "test", per_cell=2, seed=FRESH_SEED, image_size=64)
    eval_set = build_eval_set("test", PairSet.from_pairs(read_pairs(captions)), demo.query, demo.items)
    assert eval_set.sizes["gallery"] >= 200 and eval_set.relevance == "attributes"
    metrics = evaluate(eval_set, demo.query, demo.items, ks=(1, 5))
    colour_shape = metrics["colour+shape"]
    assert colour_shape["queries"] >= 16 * 4
    assert colour_shape["hit@1"] >= 0.8 and colour_shape["hit@5"] >= 0.95
    # captions naming more attributes are harder; still far above chance (1 in 20 for size and position)
    assert metrics["size+colour+shape+position"]["hit@5"] >= 0.5


@pytest.mark.parametrize(
    "query,wanted",
    [
        ("a red circle", dict(colour="red", shape="circle")),
        ("a large blue square on the left", dict(size="large", colour="blue", shape="square", position="left")),
    ],
)
def test_demo_queries_find_matching_images_first(demo, query, wanted):
    gallery = synthetic.split_attributes("validation", per_cell=2, seed=FRESH_SEED)  # 960 images, seen combinations
    images = [synthetic.render(a, np.random.default_rng([FRESH_SEED, i]), 64) for i, a in enumerate(gallery)]
    with torch.inference_mode():
        vectors = torch.nn.functional.normalize(demo.items.embed(images), dim=-1)
        text = torch.nn.functional.normalize(demo.query.embed([query]), dim=-1)
    ranking = torch.argsort(vectors @ text[0], descending=True).tolist()
    assert all(gallery[ranking[0]][k] == v for k, v in wanted.items()), gallery[ranking[0]]
    # the next ones may miss the position (its weakest attribute) but not the colour, shape or size
    for rank in ranking[:5]:
        assert all(gallery[rank][k] == v for k, v in wanted.items() if k != "position"), gallery[rank]


def test_the_word_level_tokenizer_makes_each_caption_word_one_token(tmp_path):
    tokenizer = word_level_tokenizer(every_caption())
    ids = tokenizer("a large blue square on the left")["input_ids"]
    assert len(ids) == 2 + 7  # start, seven words, end
    tokenizer.save_pretrained(str(tmp_path))
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert reloaded("a large blue square on the left")["input_ids"] == ids
    # a word it never saw still tokenizes, in pieces
    assert len(reloaded("a zebra")["input_ids"]) > 4
    assert (
        AutoTokenizer.from_pretrained(str(BUILTIN_DEMO_DIR))("a red circle")["input_ids"]
        == tokenizer("a red circle")["input_ids"]
    )
