"""Text-to-image retrieval metrics from a similarity matrix and a relevance matrix.

Row ``q`` of ``scores`` holds query ``q``'s similarity to every gallery image; row ``q`` of ``relevant``
says which images are relevant to it. The gallery is ranked by descending score, ties in gallery order
(a stable sort), and every metric is the mean over queries that have at least one relevant image:

- ``precision@k``: relevant images among the first k, divided by k;
- ``recall@k``: relevant images among the first k, divided by the number of relevant images;
- ``hit@k``: 1 if any of the first k is relevant;
- ``mrr``: 1 / rank of the first relevant image (over the whole ranking);
- ``ndcg@k``: DCG of the first k (gain 1 per relevant image, discount 1/log2(rank+1)) divided by the
  DCG of an ideal ranking;
- ``ap``: average precision over the whole ranking (mean of precision@rank at each relevant image's
  rank), so its mean over queries is mAP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_ORDER = ("hit", "precision", "recall", "ndcg", "mrr", "ap")


def metric_names(ks: Sequence[int]) -> list[str]:
    """Metric keys in display order, e.g. hit@1, hit@5, precision@1, ..., mrr, ap."""
    names = []
    for metric in METRIC_ORDER:
        if metric in ("mrr", "ap"):
            names.append(metric)
        else:
            names.extend(f"{metric}@{k}" for k in ks)
    return names


def ranked_relevance(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """``relevant`` reordered so that each row follows its query's ranking (best first)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")
    return np.take_along_axis(np.asarray(relevant, dtype=bool), order, axis=1)


def per_query_metrics(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Every metric for every query with at least one relevant image (rows without one are dropped)."""
    scores, relevant = np.asarray(scores), np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and relevance {relevant.shape} must be the same 2-d shape")
    keep = relevant.any(axis=1)
    ranked = ranked_relevance(scores[keep], relevant[keep]).astype(np.float64)
    total = ranked.sum(axis=1)
    ranks = np.arange(1, ranked.shape[1] + 1, dtype=np.float64)
    found = np.cumsum(ranked, axis=1)
    discounts = 1.0 / np.log2(ranks + 1.0)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        top = min(k, ranked.shape[1])
        hits = found[:, top - 1]
        out[f"hit@{k}"] = (hits > 0).astype(np.float64)
        out[f"precision@{k}"] = hits / k
        out[f"recall@{k}"] = hits / total
        dcg = (ranked[:, :top] * discounts[:top]).sum(axis=1)
        ideal = np.array([discounts[: int(min(n, top))].sum() for n in total])
        out[f"ndcg@{k}"] = dcg / ideal
    first = ranked.argmax(axis=1)
    out["mrr"] = 1.0 / (first + 1.0)
    out["ap"] = (ranked * found / ranks).sum(axis=1) / total
    return out


def retrieval_metrics(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """The mean of each metric over queries with a relevant image, plus ``queries`` (how many)."""
    per_query = per_query_metrics(scores, relevant, ks)
    count = len(per_query["mrr"])
    means = {name: float(per_query[name].mean()) if count else float("nan") for name in metric_names(ks)}
    return {**means, "queries": count}


def comparison_table(before: dict[str, float], after: dict[str, float], ks: Sequence[int], title: str = "") -> str:
    """A plain-text table: one row per metric, columns before / after / change."""
    names = metric_names(ks)
    width = max(len(n) for n in names + ["metric"])
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  {'before':>8}  {'after':>8}  {'change':>8}")
    for name in names:
        change = after[name] - before[name]
        lines.append(f"{name:<{width}}  {before[name]:>8.4f}  {after[name]:>8.4f}  {change:>+8.4f}")
    return "\n".join(lines)
