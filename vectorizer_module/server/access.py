"""One request's bookkeeping: its metrics and its access-log line."""

from __future__ import annotations

import logging
from typing import Any

from vectorizer_module.metrics import Metrics

log = logging.getLogger("vectorizer_module.access")
# polled every few seconds (orchestrators; Weaviate asks /meta on each of its own readiness checks):
# logged at debug, also while they answer 503 (loading, draining); any other failure at info
PROBES = frozenset({"/.well-known/live", "/.well-known/ready", "/meta", "/metrics"})


def record(
    metrics: Metrics,
    method: str,
    endpoint: str,
    status: int,
    seconds: float,
    request_id: str,
    body_bytes: int = 0,
    **sizes: Any,
) -> None:
    """Count the request, time it, and log it (``endpoint`` is the route's rule, or "unmatched")."""
    metrics.requests.labels(endpoint, str(status)).inc()
    metrics.latency.labels(endpoint).observe(seconds)
    quiet = endpoint in PROBES and (status < 400 or status == 503)
    extra = {
        "request_id": request_id,
        "status": status,
        "endpoint": endpoint,
        "ms": round(seconds * 1000, 2),
        "body_bytes": body_bytes,
        **sizes,
    }
    log.log(logging.DEBUG if quiet else logging.INFO, "%s %s %d", method, endpoint, status, extra=extra)
