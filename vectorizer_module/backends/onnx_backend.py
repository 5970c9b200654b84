"""ONNX Runtime: each tower exported through the tower interface and run by onnxruntime on the CPU.

On a CPU, ONNX Runtime runs CLIP's towers faster than eager torch in float32 (see docs/benchmarks.md).
Export happens once per model and is cached on disk, keyed by the weights' size and modification time;
the torch towers keep their tokenizer or image processor (so preprocessing, padding and limits stay the
same) while their weights move to the ``meta`` device, freeing their memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vectorizer_module.backends.base import Backend, Batch
from vectorizer_module.config import Settings
from vectorizer_module.models.base import Tower, Towers
from vectorizer_module.models.loading import ModelSource

log = logging.getLogger(__name__)

OUTPUT_NAME = "embeddings"
EXPORT_FORMAT = "weights-apart"  # in the cache key: graphs exported before their weights moved out are redone
MATRIX_PRODUCTS = ["MatMul", "Gemm"]  # what int8 quantises: the linear layers and attention's products
MAX_BATCH = 4096  # the exported graphs' bound on their batch dimension


def _dynamic_shapes(tower: Tower) -> dict[str, dict[int, Any]]:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    if tower.modality == "text":
        sequence = torch.export.Dim("sequence", min=2, max=tower.max_length)
        return {name: {0: batch, 1: sequence} for name in tower.input_names}
    return {name: {0: batch} for name in tower.input_names}


def export_tower(tower: Tower, path: Path) -> Path:
    """Write ``tower`` as an ONNX graph (float32, dynamic batch and sequence) to ``path``, its weights to
    ``path`` + ``.data``: onnxruntime maps such a file instead of copying the weights out of the graph's
    protobuf (a ViT-B/32 image graph's session: 582 -> 382 MB). The graph is written last, so that a
    graph in the cache is a whole export."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}.onnx")
    tower = tower.float().eval()
    examples = tower.example_inputs(batch_size=2)
    if tower.modality == "text":  # a sequence dimension that is not 2, so that export keeps it symbolic
        examples = tower.to_model_inputs(tower.preprocess(["an example text for export", "another one"]))
    for chatty in ("onnx_ir", "onnxscript"):  # a line per deduplicated initializer or skipped folding otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    torch.onnx.export(
        tower,
        examples,
        str(temporary),
        input_names=list(tower.input_names),
        output_names=[OUTPUT_NAME],
        dynamic_shapes=_dynamic_shapes(tower),
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    # saved again by onnx rather than by torch's own external_data=True: torch's weights file left a
    # ViT-B/32's service 28 MB larger once loaded (1502 against 1474 MB), for the same tensors
    graph = onnx.load(str(temporary))
    temporary.unlink()
    staging = path.parent / f".staging{os.getpid()}"
    staging.mkdir(exist_ok=True)
    data = path.name + ".data"
    onnx.save_model(graph, str(staging / path.name), save_as_external_data=True, location=data)
    os.chmod(staging / data, (staging / path.name).stat().st_mode & 0o777)  # onnx writes it 0600: as the graph
    (staging / data).replace(path.parent / data)
    (staging / path.name).replace(path)
    staging.rmdir()
    return path


def cache_key(weights: Path, modality: str) -> str:
    """Changes whenever a weights file changes (size or modification time) or our version does. Weights
    in subfolders count: a hub cache's snapshot (the reference image's models/openclip) links them there."""
    from vectorizer_module import __version__

    root = Path(weights)
    files = sorted(p for p in root.rglob("*") if p.suffix in (".safetensors", ".bin", ".pth") and p.is_file())
    stamp = "|".join(f"{p.relative_to(root)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    digest = hashlib.sha256(
        f"{Path(weights).resolve()}|{stamp}|{torch.__version__}|{__version__}|{EXPORT_FORMAT}".encode()
    )
    return f"{modality}-{digest.hexdigest()[:16]}.onnx"


def quantize(path: Path) -> Path:
    """The int8 graph of the float32 graph at ``path`` (made once beside it): onnxruntime's dynamic
    quantisation of the matrix products, weights int8 per tensor and activations quantised per batch."""
    target = path.with_name(path.stem + "-int8.onnx")
    if target.exists():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()
    temporary = target.with_suffix(f".tmp{os.getpid()}.onnx")
    root = logging.getLogger()
    advice = _Drop("pre-processing before quantization")  # a warning about static quantisation's calibration
    root.addFilter(advice)
    try:
        quantize_dynamic(str(path), str(temporary), weight_type=QuantType.QInt8, op_types_to_quantize=MATRIX_PRODUCTS)
    finally:
        root.removeFilter(advice)
    temporary.replace(target)
    log.info("quantised %s to int8 in %.1f s (once per model)", path.name, time.perf_counter() - started)
    return target


class _Drop(logging.Filter):
    def __init__(self, words: str) -> None:
        super().__init__()
        self.words = words

    def filter(self, record: logging.LogRecord) -> bool:
        return self.words not in record.getMessage()


def export(towers: Towers, weights: dict[str, Path], cache_dir: Path, *, int8: bool = False) -> dict[str, Path]:
    """The graph of each tower, by modality: exported on first use, then cached in ``cache_dir``; with
    ``int8``, the quantised graphs (made once beside the float32 ones)."""
    refused = [t for t in (towers.query, towers.items) if not t.onnx_exportable]
    if refused:
        raise RuntimeError(
            f"VECTORIZER_BACKEND=onnx cannot run the {refused[0].modality} tower of the "
            f"{towers.info.family} family ({type(refused[0]).__name__}): use the torch backend"
        )
    graphs = {}
    for tower in (towers.query, towers.items):
        path = Path(cache_dir) / cache_key(weights[tower.modality], tower.modality)
        if not path.exists():
            started = time.perf_counter()
            log.info("exporting the %s tower to ONNX at %s (once per model)", tower.modality, path)
            export_tower(tower, path)
            log.info("exported the %s tower in %.1f s", tower.modality, time.perf_counter() - started)
        graphs[tower.modality] = quantize(path) if int8 else path
    return graphs


def session_options(threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # onnxruntime otherwise keeps a second, prepacked copy of every matrix product's weights: 583 -> 376 MB
    # for a ViT-B/32's image graph, for 9 % of its speed (docs/benchmarks.md)
    options.add_session_config_entry("session.disable_prepacking", "1")
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False  # an arena keeps its largest batch's activations: 36 MB, 3-6 % speed
    return options


class OnnxBackend(Backend):
    """Both towers' graphs in onnxruntime sessions on the CPU."""

    name = "onnx"
    max_batch = MAX_BATCH

    def __init__(self, graphs: dict[str, Path], threads: int) -> None:
        import onnxruntime

        options = session_options(threads)
        self.sessions = {
            modality: onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for modality, path in graphs.items()
        }
        self.inputs = {modality: [i.name for i in s.get_inputs()] for modality, s in self.sessions.items()}

    @classmethod
    def create(cls, towers: Towers, source: ModelSource, settings: Settings, dtype: str) -> OnnxBackend:
        if settings.enable_cuda or dtype not in ("float32", "int8"):
            raise RuntimeError(
                "VECTORIZER_BACKEND=onnx runs on the CPU in float32 or int8: turn ENABLE_CUDA off and "
                "set VECTORIZER_DTYPE to auto, float32 or int8"
            )
        cache = Path(settings.onnx_cache).expanduser()
        return cls.load(towers, weights_of(source), cache, settings.threads_per_worker, int8=dtype == "int8")

    @classmethod
    def load(
        cls, towers: Towers, weights: dict[str, Path], cache_dir: Path, threads: int, *, int8: bool = False
    ) -> OnnxBackend:
        """The backend of ``towers`` (exported if not cached yet); the towers' weights then move to the
        ``meta`` device, as the sessions hold them, and the towers keep only their preprocessing."""
        backend = cls(export(towers, weights, cache_dir, int8=int8), threads)
        for tower in (towers.query, towers.items):  # both sessions made: a failure above left the towers whole
            tower.to("meta")
        return backend

    def embed(self, modality: str, batch: Batch) -> np.ndarray:
        feed = {name: batch[name].numpy() for name in self.inputs[modality]}
        return self.sessions[modality].run([OUTPUT_NAME], feed)[0]


def weights_of(source: Any) -> dict[str, Path]:
    """The weights each tower of a ``loading.ModelSource`` comes from (what the export's cache key stamps)."""
    return {"text": source.text_weights, "image": source.vision_weights}
