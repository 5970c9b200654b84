"""Connect weaviate-client v4 to a Weaviate by URL, with one-line errors when it is not there."""

from __future__ import annotations

from urllib.parse import urlsplit

import weaviate
from weaviate.classes.init import AdditionalConfig, Timeout
from weaviate.exceptions import WeaviateConnectionError, WeaviateGRPCUnavailableError, WeaviateStartUpError

from plugin_api.errors import NotReachable

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_GRPC_PORT = 50051


def connect(
    url: str = DEFAULT_URL,
    *,
    grpc_port: int = DEFAULT_GRPC_PORT,
    timeout_s: float = 120.0,
    headers: dict[str, str] | None = None,
) -> weaviate.WeaviateClient:
    """A connected client for the Weaviate at ``url`` (REST) and ``grpc_port`` on the same host.

    ``timeout_s`` bounds queries and inserts; Weaviate vectorises every inserted object through the
    inference service during the insert call, so a batch of large images needs more than the default.
    """
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotReachable(f"not a Weaviate URL: {url!r} (expected e.g. {DEFAULT_URL})")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    try:
        return weaviate.connect_to_custom(
            http_host=parts.hostname,
            http_port=port,
            http_secure=secure,
            grpc_host=parts.hostname,
            grpc_port=grpc_port,
            grpc_secure=secure,
            headers=headers,
            additional_config=AdditionalConfig(timeout=Timeout(init=10, query=timeout_s, insert=timeout_s)),
        )
    except WeaviateGRPCUnavailableError as exc:
        raise NotReachable(
            f"Weaviate answers at {url} but not its gRPC port {grpc_port} (pass the right --grpc-port)"
        ) from exc
    except (WeaviateConnectionError, WeaviateStartUpError) as exc:
        raise NotReachable(
            f"cannot reach Weaviate at {url}: {_first_line(exc)} (start a local one with `clip-weaviate up`)"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
