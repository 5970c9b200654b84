"""Whether Weaviate and the inference service behind it can take work now, and which errors pass.

Weaviate's ``/v1/meta`` carries, under ``modules.multi2vec-clip``, what the module's service answers on
its own ``/meta``; when the service does not answer (connection refused) or refuses (503 while its model
loads), it carries ``{"error": "<why>"}`` instead, asked afresh on every call. It never shows the
service's URL, so a caller that knows the URL (``--vectorizer-url``, or a stack it started itself) can
ask the service's ``/.well-known/ready`` directly, which also works for a Weaviate whose ``/v1/meta``
needs credentials.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from plugin_api.errors import NotReachable

MODULE = "multi2vec-clip"
DEFAULT_MAX_WAIT = 120.0  # seconds: a real CLIP loads in well under that, even on a busy CPU host
POLL_INTERVAL = 0.5

# Messages of failures that pass by themselves: the service down or restarting (Weaviate's Go transport
# errors), our 503s (loading, queue full, deadline, draining), gateways, and client-side timeouts.
_TRANSIENT = re.compile(
    r"connection refused|connection reset|broken pipe|no route to host|server disconnected"
    r"|status (?:502|503|504)\b|still loading|shutting down|unavailable"
    r"|timed out|timeout|deadline exceeded|context canceled",
    re.IGNORECASE,
)
_EOF = re.compile(r"\bEOF\b")  # Go's io.EOF: the service closed the connection before answering


def is_transient(message: str) -> bool:
    """Whether an error message (Weaviate's per-object error, or a client exception's text) says the
    service was unreachable, loading or overloaded, so that the same request may succeed later."""
    return bool(_TRANSIENT.search(message) or _EOF.search(message))


class ServiceDown(NotReachable):
    """Weaviate or its inference service stayed unready for the whole wait; ``problem`` says which."""

    def __init__(self, problem: str, waited: float) -> None:
        super().__init__(f"{problem} (waited {waited:.0f} s)")
        self.problem = problem


class ModuleMissing(NotReachable):
    """Weaviate answers but runs without the multi2vec-clip module: waiting will not help."""


def _get(url: str, timeout: float) -> tuple[int | None, bytes]:
    """Status and body of ``GET url``; ``(None, b"")`` when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError):
        return None, b""


def _error_text(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return " ".join(body.decode(errors="replace").split())[:200]
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return value["error"]
    return ""


class Readiness:
    """Ask Weaviate at ``weaviate_url`` (and the service at ``vectorizer_url``, when known) whether an
    import can go on: :meth:`problem` answers now, :meth:`wait` polls until it can or time runs out."""

    def __init__(
        self, weaviate_url: str, *, vectorizer_url: str | None = None, module: str = MODULE, probe_timeout: float = 2.0
    ) -> None:
        self.weaviate_url = weaviate_url.rstrip("/")
        self.vectorizer_url = vectorizer_url.rstrip("/") if vectorizer_url else None
        self.module = module
        self.probe_timeout = probe_timeout

    def problem(self) -> str | None:
        """None when both can take work, else one line saying what is not ready.
        Raises :class:`ModuleMissing` when Weaviate runs without the module."""
        status, _ = _get(self.weaviate_url + "/v1/.well-known/ready", self.probe_timeout)
        if status is None:
            return f"cannot reach Weaviate at {self.weaviate_url}"
        if status != 200:
            return f"Weaviate at {self.weaviate_url} is not ready (status {status})"
        if self.vectorizer_url is not None:
            status, body = _get(self.vectorizer_url + "/.well-known/ready", self.probe_timeout)
            if status is None:
                return f"the inference service at {self.vectorizer_url} does not answer"
            if status != 204:
                why = _error_text(body) or f"status {status}"
                return f"the inference service at {self.vectorizer_url} is not ready: {why}"
            return None
        status, body = _get(self.weaviate_url + "/v1/meta", self.probe_timeout)
        if status != 200:
            return None  # e.g. /v1/meta needs credentials: nothing to learn here, the import's retries decide
        try:
            modules = json.loads(body).get("modules") or {}
        except (ValueError, AttributeError):
            return None
        if self.module not in modules:
            raise ModuleMissing(
                f"Weaviate at {self.weaviate_url} runs without the {self.module} module "
                f"(start it with ENABLE_MODULES={self.module} and CLIP_INFERENCE_API=<service URL>)"
            )
        module = modules[self.module]
        if isinstance(module, dict) and "error" in module:
            return f"Weaviate's {self.module} service is not ready: {' '.join(str(module['error']).split())}"
        return None

    def wait(
        self, timeout: float, *, on_wait: Callable[[str], None] | None = None, poll: float = POLL_INTERVAL
    ) -> None:
        """Return once :meth:`problem` is None; ``on_wait`` is told the first problem, once. Raises
        :class:`ServiceDown` with the last problem when ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        told = False
        while True:
            problem = self.problem()
            if problem is None:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceDown(problem, timeout)
            if on_wait is not None and not told:
                on_wait(f"waiting up to {timeout:.0f} s: {problem}")
                told = True
            time.sleep(min(poll, remaining))
