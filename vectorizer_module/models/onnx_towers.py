"""ONNX Runtime backend: each tower exported through the tower interface and run by onnxruntime on the CPU.

On a CPU, ONNX Runtime runs CLIP's towers up to ~2.7x faster than eager torch at small batches (see
docs/benchmarks.md). Export happens once per model and is cached on disk, keyed by the weights' size and
modification time; the torch tower keeps its tokenizer or image processor (so preprocessing, padding
and limits stay the same) while its weights move to the ``meta`` device, freeing their memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vectorizer_module.models.base import TextTower, Tower, Towers, VisionTower

log = logging.getLogger(__name__)

OUTPUT_NAME = "embeddings"
EXPORT_FORMAT = "weights-apart"  # in the cache key: graphs exported before their weights moved out are redone
MATRIX_PRODUCTS = ["MatMul", "Gemm"]  # what int8 quantises: the linear layers and attention's products


def _dynamic_shapes(tower: Tower) -> dict[str, dict[int, Any]]:
    batch = torch.export.Dim("batch", min=1, max=4096)
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


class _OnnxMixin:
    """Runs ``forward`` in an onnxruntime session; everything else comes from the torch tower."""

    def _setup(self, torch_tower: Tower, session: Any) -> None:
        self.torch_tower = torch_tower
        self.session = session
        self._inputs = [i.name for i in session.get_inputs()]

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def embedding_dim(self) -> int:
        return self.torch_tower.embedding_dim

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        return self.torch_tower.preprocess(items)

    def collate(
        self, parts: Sequence[dict[str, torch.Tensor]], *, fixed_rows: int | None = None
    ) -> dict[str, torch.Tensor]:
        return self.torch_tower.collate(parts, fixed_rows=fixed_rows)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {name: tensor.detach().cpu().numpy() for name, tensor in zip(self._inputs, inputs)}
        return torch.from_numpy(self.session.run([OUTPUT_NAME], feed)[0])


class OnnxTextTower(_OnnxMixin, TextTower):
    def __init__(self, torch_tower: TextTower, session: Any) -> None:
        super().__init__()
        self._setup(torch_tower, session)
        self.input_names = torch_tower.input_names  # SigLIP's text tower takes input_ids only

    @property
    def max_length(self) -> int:
        return self.torch_tower.max_length

    @property
    def pad_token_id(self) -> int:
        return self.torch_tower.pad_token_id

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        batch = self.preprocess([f"example text number {i}" for i in range(batch_size)])
        return tuple(batch[name] for name in self.input_names)


class OnnxVisionTower(_OnnxMixin, VisionTower):
    def __init__(self, torch_tower: VisionTower, session: Any) -> None:
        super().__init__()
        self._setup(torch_tower, session)

    @property
    def image_size(self) -> int:
        return self.torch_tower.image_size

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        size = self.image_size
        return (torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)),)


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


def to_onnx(towers: Towers, weights: dict[str, Path], cache_dir: Path, threads: int, *, int8: bool = False) -> Towers:
    """``towers`` with both forwards running in onnxruntime (exported on first use, then cached; with
    ``int8``, the quantised graphs)."""
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
    refused = [t for t in (towers.query, towers.items) if not getattr(t, "onnx_exportable", True)]
    if refused:
        raise RuntimeError(
            f"VECTORIZER_BACKEND=onnx cannot run the {refused[0].modality} tower of the "
            f"{towers.info.family} family ({type(refused[0]).__name__}): use the torch backend"
        )
    sessions = []
    for tower in (towers.query, towers.items):
        path = Path(cache_dir) / cache_key(weights[tower.modality], tower.modality)
        if not path.exists():
            started = time.perf_counter()
            log.info("exporting the %s tower to ONNX at %s (once per model)", tower.modality, path)
            export_tower(tower, path)
            log.info("exported the %s tower in %.1f s", tower.modality, time.perf_counter() - started)
        if int8:
            path = quantize(path)
        sessions.append(onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
    for tower in (towers.query, towers.items):  # both sessions made: a failure above left the towers whole
        tower.to("meta")  # its weights now live in the session; keep only the preprocessing
    query, items = OnnxTextTower(towers.query, sessions[0]), OnnxVisionTower(towers.items, sessions[1])
    return Towers(query=query, items=items, info=towers.info)


def weights_of(source: Any) -> dict[str, Path]:
    """The weights each tower of a ``loading.ModelSource`` comes from (what the export's cache key stamps)."""
    return {"text": source.text_weights, "image": source.vision_weights}
