"""Retrieval metrics on hand-made similarity matrices whose answers are worked out by hand."""

import math

import numpy as np
import pytest

from clip_training.data import Pair, PairSet
from clip_training.evaluate import relevance_matrix
from clip_training.metrics import comparison_table, per_query_metrics, retrieval_metrics

LOG2_3, LOG2_5 = math.log2(3), math.log2(5)


def test_one_query_with_relevant_images_at_ranks_two_and_four():
    # gallery order is shuffled: ranking by score is images 3, 0, 4, 1, 2
    scores = np.array([[0.8, 0.6, 0.5, 0.9, 0.7]])
    relevant = np.array([[True, True, False, False, False]])  # ranks 2 (image 0) and 4 (image 1)
    m = retrieval_metrics(scores, relevant, ks=(1, 2, 3, 5, 10))
    assert m["queries"] == 1
    assert m["hit@1"] == 0 and m["hit@2"] == 1 and m["hit@10"] == 1
    assert m["precision@1"] == 0 and m["precision@2"] == pytest.approx(1 / 2)
    assert m["precision@3"] == pytest.approx(1 / 3) and m["precision@5"] == pytest.approx(2 / 5)
    assert m["precision@10"] == pytest.approx(2 / 10)  # k beyond the gallery still divides by k
    assert m["recall@1"] == 0 and m["recall@3"] == pytest.approx(1 / 2) and m["recall@5"] == 1
    assert m["mrr"] == pytest.approx(1 / 2)
    assert m["ap"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    ideal = 1 + 1 / LOG2_3
    assert m["ndcg@1"] == 0
    assert m["ndcg@3"] == pytest.approx((1 / LOG2_3) / ideal)
    assert m["ndcg@5"] == pytest.approx((1 / LOG2_3 + 1 / LOG2_5) / ideal)


def test_means_over_queries_and_queries_without_relevant_images_are_left_out():
    scores = np.array(
        [
            [0.1, 0.9, 0.5],  # ranking 1, 2, 0
            [0.3, 0.2, 0.1],  # ranking 0, 1, 2
            [0.5, 0.4, 0.3],  # no relevant image: not counted
        ]
    )
    relevant = np.array(
        [
            [False, True, False],  # relevant first
            [False, False, True],  # relevant last
            [False, False, False],
        ]
    )
    m = retrieval_metrics(scores, relevant, ks=(1, 2))
    assert m["queries"] == 2
    assert m["hit@1"] == pytest.approx(0.5) and m["hit@2"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["ap"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["ndcg@2"] == pytest.approx((1 + 0) / 2)
    per_query = per_query_metrics(scores, relevant, ks=(2,))
    assert per_query["recall@2"].tolist() == [1.0, 0.0]


def test_all_relevant_and_perfect_ranking_score_one():
    scores = np.array([[0.9, 0.8, 0.1, 0.0]])
    relevant = np.array([[True, True, False, False]])
    m = retrieval_metrics(scores, relevant, ks=(2,))
    assert m["precision@2"] == m["recall@2"] == m["ndcg@2"] == m["ap"] == m["mrr"] == 1.0
    # the worst ranking of the same relevance
    worst = retrieval_metrics(-scores, relevant, ks=(2,))
    assert worst["hit@2"] == 0 and worst["mrr"] == pytest.approx(1 / 3)
    assert worst["ap"] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_ties_are_broken_in_gallery_order():
    scores = np.array([[0.5, 0.5, 0.5]])
    assert retrieval_metrics(scores, np.array([[True, False, False]]), ks=(1,))["hit@1"] == 1
    assert retrieval_metrics(scores, np.array([[False, False, True]]), ks=(1,))["mrr"] == pytest.approx(1 / 3)


def test_bad_shapes_and_k_are_refused():
    with pytest.raises(ValueError, match="same 2-d shape"):
        retrieval_metrics(np.zeros((2, 3)), np.zeros((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="at least 1"):
        retrieval_metrics(np.zeros((1, 3)), np.ones((1, 3), dtype=bool), ks=(0,))


def test_relevance_by_pairs_and_by_attributes(tmp_path):
    red_big = {"colour": "red", "shape": "circle", "size": "large"}
    red_small = {"colour": "red", "shape": "circle", "size": "small"}
    blue = {"colour": "blue", "shape": "circle", "size": "small"}
    pairs = PairSet.from_pairs(
        [
            Pair(
                tmp_path / "a.png", "a large red circle", {"size": "large", "colour": "red", "shape": "circle"}, red_big
            ),
            Pair(tmp_path / "a.png", "a red circle", {"colour": "red", "shape": "circle"}, red_big),
            Pair(tmp_path / "b.png", "a red circle", {"colour": "red", "shape": "circle"}, red_small),
            Pair(tmp_path / "c.png", "a blue circle", {"colour": "blue", "shape": "circle"}, blue),
        ]
    )
    assert pairs.captions == ["a large red circle", "a red circle", "a blue circle"]
    by_pairs, mode = relevance_matrix(pairs, "pairs")
    assert mode == "pairs"
    assert by_pairs.tolist() == [[True, False, False], [True, True, False], [False, False, True]]
    by_attributes, mode = relevance_matrix(pairs, "auto")
    assert mode == "attributes" and by_attributes.tolist() == by_pairs.tolist()
    # "a red circle" with a third red circle only known by its attributes
    more = PairSet.from_pairs(list(_pairs_with_extra_red(tmp_path, red_small)))
    relevant, _ = relevance_matrix(more, "attributes")
    assert relevant[more.captions.index("a red circle")].tolist() == [True, True]
    assert relevance_matrix(more, "pairs")[0][more.captions.index("a red circle")].tolist() == [True, False]


def _pairs_with_extra_red(tmp_path, red_small):
    yield Pair(tmp_path / "a.png", "a red circle", {"colour": "red", "shape": "circle"}, red_small)
    yield Pair(
        tmp_path / "d.png", "a small red circle", {"size": "small", "colour": "red", "shape": "circle"}, red_small
    )


def test_comparison_table_shows_before_after_and_change():
    before = {"hit@1": 0.25, "precision@1": 0.25, "recall@1": 0.1, "ndcg@1": 0.25, "mrr": 0.5, "ap": 0.4}
    after = {"hit@1": 0.75, "precision@1": 0.75, "recall@1": 0.3, "ndcg@1": 0.75, "mrr": 0.8, "ap": 0.7}
    table = comparison_table(before, after, ks=(1,), title="demo")
    lines = table.splitlines()
    assert lines[0] == "demo" and lines[1].split() == ["metric", "before", "after", "change"]
    assert lines[2].split() == ["hit@1", "0.2500", "0.7500", "+0.5000"]
    assert lines[-1].split() == ["ap", "0.4000", "0.7000", "+0.3000"]
