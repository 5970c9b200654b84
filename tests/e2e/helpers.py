"""Vectors straight from our service, and the formulas Weaviate applies to them (contract §1(c), §1(d))."""

from __future__ import annotations

import numpy as np
import requests

from plugin_api.images import to_base64


def vectorize(service_url: str, texts: list[str] = (), images: list[bytes] = ()) -> tuple[np.ndarray, np.ndarray]:
    response = requests.post(
        service_url + "/vectorize", json={"texts": list(texts), "images": [to_base64(i) for i in images]}, timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return np.asarray(body["textVectors"], dtype=np.float32), np.asarray(body["imageVectors"], dtype=np.float32)


def text_vector(service_url: str, text: str) -> np.ndarray:
    return vectorize(service_url, texts=[text])[0][0]


def image_vector(service_url: str, image: bytes) -> np.ndarray:
    return vectorize(service_url, images=[image])[1][0]


def service_error(service_url: str, image: bytes) -> str:
    response = requests.post(service_url + "/vectorize", json={"images": [to_base64(image)]}, timeout=60)
    assert response.status_code >= 400, "expected the service to refuse this image"
    return response.json()["error"]


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def combine(vectors: list[np.ndarray], weights: list[float] | None = None) -> np.ndarray:
    """Weaviate's CombineVectorsWithWeights: per dimension sum(w_i * v_i) / n, weights normalised to sum
    1, n the number of vectors; no renormalisation of the result."""
    stacked = np.stack(vectors).astype(np.float64)
    if weights is None:
        return stacked.mean(axis=0)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    return (w[:, None] * stacked).sum(axis=0) / len(vectors)


def move_to(source: np.ndarray, target: np.ndarray, force: float) -> np.ndarray:
    return source * (1 - force * 0.5) + target * (force * 0.5)


def move_away(source: np.ndarray, target: np.ndarray, force: float) -> np.ndarray:
    return source + force * 0.5 * (source - target)


def cosine_distances(query: np.ndarray, stored: dict[str, np.ndarray]) -> dict[str, float]:
    return {uuid: 1.0 - cosine(query, vector) for uuid, vector in stored.items()}


def assert_ranked_by(hits, expected_distance: dict[str, float], *, tolerance: float = 1e-4) -> None:
    """Weaviate's hits come in the order of ``expected_distance`` (computed locally), each with that
    distance; near-ties (within ``tolerance``) may come in either order."""
    got = [h.uuid for h in hits]
    assert sorted(got) == sorted(expected_distance), "Weaviate returned other objects than expected"
    for hit in hits:
        if hit.distance is not None:
            assert abs(hit.distance - expected_distance[hit.uuid]) < tolerance, (
                hit.uuid,
                hit.distance,
                expected_distance[hit.uuid],
            )
    distances = [expected_distance[u] for u in got]
    assert all(a <= b + tolerance for a, b in zip(distances, distances[1:])), (
        f"Weaviate's order {got} is not the order of local distances {distances}"
    )
