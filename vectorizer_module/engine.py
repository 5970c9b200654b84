"""The engine: loads the towers, warms them up, and turns texts and image bytes into vectors.

The path of one ``embed`` call, top to bottom:
1. every input gets a content key; inputs already in the vector cache, and repeats within the request,
   are not computed again (so identical inputs get bit-identical vectors);
2. the unique texts and images still to compute go to the batcher (``batching``), which refuses work
   past the service-wide queue bound (``admission``), then has the request's thread prepare each item
   in turn: a text is tokenised, an image decoded in full (within the worker's pixel budget) and made
   into the tower's input at once, so only one full-size picture per request is ever held and a bad
   image fails the request before anything is queued; past the deadline, or once the client is gone,
   it stops; texts and images are both queued before the request waits for either;
3. vectors are L2-normalised in float32 where the layout calls for it (``VECTORIZER_NORMALIZE``), then cached.
"""

from __future__ import annotations

import io
import logging
import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vectorizer_module import __version__, answers
from vectorizer_module.admission import Cancelled, PixelBudget, QueueBudget, never_cancelled
from vectorizer_module.answers import Answer
from vectorizer_module.cache import VectorCache, content_key
from vectorizer_module.config import Settings
from vectorizer_module.errors import still_loading
from vectorizer_module.metrics import Metrics
from vectorizer_module.models.loading import ModelSource
from vectorizer_module.precision import BackendChoice, resolve_backend
from vectorizer_module.preprocessing.images import load_rgb, open_image
from vectorizer_module.protocols.common import dumps

if TYPE_CHECKING:  # torch is imported only once the model loads
    import torch

    from vectorizer_module.backends.base import Backend, Batch
    from vectorizer_module.batching import Batcher, ModelThread
    from vectorizer_module.models.base import Towers

log = logging.getLogger(__name__)
META_KEY = "clip-vectorizer"  # this service's own part of /meta, beside the reference image's keys


@dataclass(frozen=True)
class EncodedImage:
    """An image as the request sent it (bytes), with the label its errors start with (``images[2]``)."""

    label: str
    data: bytes


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


class Embedder(Protocol):
    """What the HTTP app needs of an engine: this module's ``Engine``, or a worker's ``RemoteEngine``
    (``server/model_process.py``), which answers with an ``Engine`` in a process of its own."""

    settings: Settings
    metrics: Metrics

    @property
    def ready(self) -> bool: ...

    @property
    def meta_body(self) -> bytes: ...

    def answer(
        self, route: str, body: bytes, *, deadline: float | None = None, cancelled: Cancelled = never_cancelled
    ) -> Answer: ...


class Engine:
    def __init__(
        self,
        settings: Settings,
        source: ModelSource,
        metrics: Metrics | None = None,
        budget: QueueBudget | None = None,
        model_thread: ModelThread | None = None,
    ) -> None:
        """``model_thread``: where the forward passes run (a worker's initial thread serves it; see
        ``batching.py``); without one, on the lanes' own threads."""
        self.settings = settings
        self.model_thread = model_thread
        self.source = source
        self.metrics = metrics or Metrics()
        self.budget = budget or QueueBudget(settings.max_queue)
        self.towers: Towers | None = None
        self.batcher: Batcher | None = None
        self.meta_body: bytes = b""
        self.load_seconds: float | None = None
        self.cache = VectorCache(settings.cache_size)
        self.pixels = PixelBudget(settings.max_image_pixels)
        self.normalize = {"text": settings.normalize is True, "image": settings.normalize is True}  # set at load
        self.precision = settings.precision  # a bfloat16 choice is checked at load
        self.backend_choice = BackendChoice(settings.backend, "VECTORIZER_BACKEND")  # auto is resolved at load
        self.backend: Backend | None = None
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def dimension(self) -> int:
        return self.towers.info.dimension

    # -- start-up ----------------------------------------------------------------------------------
    def load(self) -> None:
        """Load both towers onto the device, run one warm-up forward each, then mark ready."""
        import torch

        from vectorizer_module.batching import Batcher
        from vectorizer_module.models import reference
        from vectorizer_module.models.loading import load_towers

        started = time.perf_counter()
        torch.set_num_threads(self.settings.threads_per_worker)
        device = torch.device(self.settings.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"ENABLE_CUDA is on (CUDA_CORE={self.settings.cuda_core}) but torch "
                f"{torch.__version__} sees no CUDA device"
            )
        towers = load_towers(self.source)
        if self.settings.normalize == "auto":
            self.normalize = reference.normalization(self.source)
        self.precision = self.settings.precision
        if self.precision.checked:
            towers = self._check_precision(towers)
        self.backend_choice = resolve_backend(
            self.settings.backend,
            dtype=self.precision.dtype,
            enable_cuda=self.settings.enable_cuda,
            exportable=towers.onnx_exportable,
            family=towers.info.family,
        )
        self.backend = self._backend(towers)
        self.backend.health(self._examples(towers))
        self.towers = towers
        self.batcher = Batcher(
            towers,
            self.backend,
            max_batch=self.settings.batch_size,
            max_wait=self.settings.batch_wait_ms / 1000,
            per_request=self.settings.batching == "per-request",
            fixed_shape=self.settings.fixed_shapes,
            budget=self.budget,
            metrics=self.metrics,
            prepare={"image": self._prepare_image},
            model_thread=self.model_thread,
        )
        self._warm_up()
        self.load_seconds = time.perf_counter() - started
        self.meta_body = dumps(self._meta())
        self.metrics.load_seconds.set(self.load_seconds)
        self.metrics.model_info.labels(
            towers.info.name,
            towers.info.layout,
            self.settings.device,
            self.precision.dtype,
            str(towers.info.dimension),
        ).set(1)
        self._ready.set()
        log.info(
            "model %s (%s, %d-d) ready on %s in %s with %s (%s) after %.1f s",
            towers.info.name,
            towers.info.layout,
            towers.info.dimension,
            device,
            self.precision.dtype,
            self.backend_choice.name,
            self.backend_choice.reason,
            self.load_seconds,
        )

    def _check_precision(self, towers: Towers) -> Towers:
        """Keep ``auto``'s bfloat16 only if this model's vectors stay close to float32's; else load the
        towers again in float32 (the check converted them). One log line says what was kept and why."""
        import dataclasses

        import torch

        from vectorizer_module.models.loading import load_towers
        from vectorizer_module.precision import MIN_COSINE, holds

        started = time.perf_counter()
        cosine = holds(towers, getattr(torch, self.precision.dtype))
        if cosine >= MIN_COSINE:
            why = f"{self.precision.reason}; this model's vectors at cosine {cosine:.5f} to float32's"
            self.precision = dataclasses.replace(self.precision, reason=why)
        else:
            why = (
                f"{self.precision.reason}, but this model's bfloat16 vectors are at cosine {cosine:.5f} to "
                f"float32's, below {MIN_COSINE}"
            )
            self.precision = dataclasses.replace(self.precision, dtype="float32", reason=why)
            towers = load_towers(self.source)
        log.info("precision %s (%s; checked in %.1f s)", self.precision.dtype, why, time.perf_counter() - started)
        return towers

    def _backend(self, towers: Towers) -> Backend:
        """The chosen backend of ``towers``; under ``auto``, torch where the ONNX export failed (a
        read-only cache, an operator the exporter lacks), with a warning and the reason in /meta."""
        from vectorizer_module.backends import backend_class

        dtype = self.precision.dtype
        try:
            return backend_class(self.backend_choice.name).create(towers, self.source, self.settings, dtype)
        except Exception as exc:
            if self.settings.backend != "auto" or self.backend_choice.name == "torch" or dtype == "int8":
                raise  # asked for by name, or int8 (only onnx runs it): say why it failed
            why = f"auto: the ONNX export failed ({type(exc).__name__}: {exc}); torch instead"
            log.warning("%s", why)
            self.backend_choice = BackendChoice("torch", why)
            return backend_class("torch").create(towers, self.source, self.settings, dtype)

    @staticmethod
    def _examples(towers: Towers) -> dict[str, Batch]:
        """A batch of each modality, made by the towers' own preprocessing, for the backend's health check."""
        from PIL import Image

        size = towers.items.image_size
        return {
            "text": towers.query.preprocess(["a photo of a cat", "a diagram"]),
            "image": towers.items.preprocess([Image.new("RGB", (size, size), (127, 127, 127))]),
        }

    def _warm_up(self) -> None:
        """One text and one image through the batcher, at the shapes serving will use."""
        from PIL import Image

        size = self.towers.items.image_size
        grey = io.BytesIO()
        Image.new("RGB", (size, size), (127, 127, 127)).save(grey, "PNG")
        texts, images = self.batcher.submit(
            ["warm-up"], [EncodedImage("warm-up", grey.getvalue())], time.monotonic() + 3600
        )
        texts.result()
        images.result()

    def _prepare_image(self, image: EncodedImage, deadline: float) -> dict[str, torch.Tensor]:
        """Decode one image and make the tower's input from it at once, within the pixel budget: the
        full-size picture is dropped before the request's next one is decoded."""
        opened = open_image(image.data, image.label, max_pixels=self.settings.max_image_pixels)
        draft = self.towers.items.image_size if self.settings.jpeg_draft else None
        with self.pixels.hold(opened.width * opened.height, deadline):
            return self.towers.items.preprocess([load_rgb(opened, image.label, draft_size=draft)])

    def _meta(self) -> dict[str, Any]:
        """The reference image's /meta for this model's layout (tools read its keys through Weaviate's own
        /v1/meta), and this service's details under a key of their own."""
        import torch
        import transformers

        from vectorizer_module.models import reference

        info = self.towers.info
        ours = {
            "model": {
                "name": info.name,
                "path": info.path,
                "family": info.family,
                "layout": info.layout,
                "dimension": info.dimension,
                "text_max_tokens": info.text_max_tokens,
                "image_size": info.image_size,
                "normalized": self.normalize,
                "builtin_demo": info.builtin_demo,
            },
            "device": self.settings.device,
            "backend": self.backend_choice.name,
            "backend_reason": self.backend_choice.reason,
            "dtype": self.precision.dtype,
            "dtype_reason": self.precision.reason,
            "batching": {
                "mode": self.settings.batching,
                "max_batch_size": self.settings.batch_size,
                "max_wait_ms": self.settings.batch_wait_ms,
                "fixed_shape": self.settings.fixed_shapes,
            },
            "workers": {"count": self.settings.worker_count, "torch_threads": self.settings.threads_per_worker},
            "load_seconds": round(self.load_seconds or 0.0, 3),
            "versions": {
                "clip-vectorizer": __version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
        }
        return {**reference.meta(self.source), META_KEY: ours}

    # -- serving -----------------------------------------------------------------------------------
    def embed(
        self,
        texts: Sequence[str],
        images: Sequence[bytes],
        *,
        deadline: float | None = None,
        cancelled: Cancelled = never_cancelled,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for ``texts`` and ``images`` (encoded bytes), in order, as float32 arrays.
        ``deadline`` (a ``time.monotonic()`` instant) defaults to now + the configured request deadline."""
        if not self.ready:
            raise still_loading()
        if deadline is None:
            deadline = time.monotonic() + self.settings.request_deadline
        text_plan = self._plan("text", texts)
        image_plan = self._plan("image", images)
        text_job, image_job = self.batcher.submit(
            [texts[i] for i in text_plan.missing.values()],
            [EncodedImage(f"images[{i}]", images[i]) for i in image_plan.missing.values()],
            deadline,
            cancelled,
        )
        try:
            text_vectors = text_plan.complete(self.cache, lambda: self._normalized("text", text_job.result()))
            image_vectors = image_plan.complete(self.cache, lambda: self._normalized("image", image_job.result()))
        finally:
            text_job.cancel()  # no-op for finished work; a request that failed frees its queued items
            image_job.cancel()
        return text_vectors, image_vectors

    def answer(
        self, route: str, body: bytes, *, deadline: float | None = None, cancelled: Cancelled = never_cancelled
    ) -> Answer:
        """The whole work of an embedding route (``answers.py``) on this engine."""
        return answers.answer(self, route, body, deadline=deadline, cancelled=cancelled)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as the text tower sees it: after truncation to the context, special
        tokens included (the attention mask of the tower's own preprocessing)."""
        if not self.ready:
            raise still_loading()
        if not texts:
            return []
        mask = self.towers.query.preprocess(list(texts))["attention_mask"]
        return [int(n) for n in mask.sum(dim=1).tolist()]

    @property
    def model_name(self) -> str:
        return self.towers.info.name

    def _plan(self, modality: str, contents: Sequence[bytes | str]) -> _Plan:
        plan = _Plan(modality, [content_key(modality, c) for c in contents], self.cache, self.dimension)
        hits = len(plan.keys) - len(plan.missing)
        if hits:
            self.metrics.cache_hits.labels(modality).inc(hits)
        return plan

    def _normalized(self, modality: str, vectors: np.ndarray) -> np.ndarray:
        return l2_normalize(vectors) if self.normalize[modality] else vectors


class _Plan:
    """Which inputs of one modality are already known (cache, or repeated in the request)."""

    def __init__(self, modality: str, keys: list[bytes], cache: VectorCache, dimension: int) -> None:
        self.modality = modality
        self.keys = keys
        self.dimension = dimension
        self.known: dict[bytes, np.ndarray] = {}
        self.missing: dict[bytes, int] = {}  # key -> index of its first occurrence
        for index, key in enumerate(keys):
            if key in self.known or key in self.missing:
                continue
            vector = cache.get(key)
            if vector is None:
                self.missing[key] = index
            else:
                self.known[key] = vector

    def complete(self, cache: VectorCache, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """All vectors, in order; ``compute`` gives those of the missing inputs (in ``missing``'s order)."""
        if self.missing:
            computed = compute()
            for key, row in zip(self.missing, computed):
                self.known[key] = cache.put(key, row.copy())
        if not self.keys:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self.known[key] for key in self.keys]).astype(np.float32, copy=False)
