"""Prometheus metrics, on a registry of their own (one per service instance).

Under the worker processes of ``server/wsgi.py`` every process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen by that variable when
prometheus_client is first imported; ``server/wsgi.py`` names each worker's files by its slot), and
``render`` adds up all workers', those of workers that died included for counters and histograms (a
replacement worker continues its predecessor's files). Gauges say how to combine workers: a sum or a
maximum over the live ones.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def multiprocess() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "clip_requests", "HTTP requests by route and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "clip_request_seconds", "HTTP request latency by route", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "clip_queue_depth", "items waiting for the model", registry=r, multiprocess_mode="livesum"
        )
        self.in_flight = Gauge(
            "clip_requests_in_flight",
            "HTTP requests being served (this scrape included)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "clip_batch_size", "items per forward pass", ["modality"], buckets=BATCH_BUCKETS, registry=r
        )
        self.embedded = Counter(
            "clip_items_embedded", "items embedded by the model (cache hits excluded)", ["modality"], registry=r
        )
        self.cache_hits = Counter("clip_cache_hits", "items answered from the vector cache", ["modality"], registry=r)
        self.rejected = Counter("clip_rejected", "requests refused, by reason", ["reason"], registry=r)
        self.load_seconds = Gauge(
            "clip_model_load_seconds",
            "seconds the slowest live worker took to load and warm up the model",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_info = Gauge(
            "clip_model_info",
            "the model served (value 1)",
            ["model", "layout", "device", "dtype", "dimension"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.worker_starts = Counter(
            "clip_worker_starts", "worker processes started (a replacement for one that died adds one)", registry=r
        )
        # one series per live worker, labelled with its pid here rather than by prometheus_client (whose
        # multiprocess files are named by worker slot, so that a replacement reuses its predecessor's, and
        # whose live modes drop a label named "pid")
        self.worker_ready = Gauge(
            "clip_worker_ready",
            "1 once a worker has its model loaded, one series per live worker (label worker: its pid)",
            ["worker"],
            registry=r,
            multiprocess_mode="livesum",
        )

    def set_worker_ready(self, ready: bool) -> None:
        self.worker_ready.labels(str(os.getpid())).set(1 if ready else 0)

    def render(self) -> bytes:
        if multiprocess():
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
