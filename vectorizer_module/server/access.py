"""One request's bookkeeping: its metrics and its access-log line, whichever path answered it."""

from __future__ import annotations

import logging
from typing import Any

from vectorizer_module.metrics import Metrics

log = logging.getLogger("vectorizer_module.access")
# polled by orchestrators every few seconds: counted, but logged only when they fail
QUIET = frozenset({"/.well-known/live", "/.well-known/ready", "/metrics"})


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
    if endpoint not in QUIET or status >= 400:
        log.info(
            "%s %s %d",
            method,
            endpoint,
            status,
            extra={
                "request_id": request_id,
                "status": status,
                "endpoint": endpoint,
                "ms": round(seconds * 1000, 2),
                "body_bytes": body_bytes,
                **sizes,
            },
        )
