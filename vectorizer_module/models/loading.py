"""Find out which layout a model directory has, and build the towers from it.

Layouts read (chosen by looking at the files, never by name):

- ``huggingface``: a transformers CLIP directory, as ``openai/clip-vit-base-patch32`` ships:
  ``config.json`` (``model_type: clip``), ``model.safetensors`` or ``pytorch_model.bin``, tokenizer
  files (``tokenizer.json`` or ``vocab.json`` + ``merges.txt``) and ``preprocessor_config.json`` or
  ``processor_config.json``. A SigLIP directory (``config.json`` with ``model_type: siglip``: SigLIP and
  the fixed-resolution SigLIP 2 checkpoints, tokenizer ``spiece.model``, ``tokenizer.json`` or
  ``tokenizer.model``) is read in the same layout, as family ``siglip``; a SigLIP 2 NaFlex directory
  (``model_type: siglip2``) as family ``siglip2``.
- ``openclip``: an OpenCLIP directory (``open_clip_config.json``, ``open_clip_model.safetensors`` or
  ``open_clip_pytorch_model.bin``, and CLIP's tokenizer files or OpenCLIP's BPE file) of the standard ViT
  architecture, served through the CLIP towers (family ``openclip``, see ``openclip.py``).
- ``sentence-transformers``: a directory with ``modules.json`` whose CLIP module is either in the root
  (sentence-transformers 6) or in a subfolder such as ``0_CLIPModel`` (``sentence-transformers/clip-ViT-B-32``).
- ``reference-image``: the ``models/`` directory of Weaviate's ``multi2vec-clip`` inference image, either
  ``openai_clip`` + ``openai_clip_processor`` or ``clip`` (vision) + ``text`` (text), each a
  sentence-transformers CLIP directory; or ``text`` a sentence-transformers text model trained into
  CLIP's space (multilingual CLIP: family ``clip-multilingual``, see ``st_text.py``); or ``siglip`` (its
  SigLIP build: config and weights, the processor in a hub cache inside it) + ``model_name``, family
  ``siglip-reference`` (texts tokenised as the reference does, see ``siglip.py``); or ``openclip`` (its
  OpenCLIP build: ``config.json`` naming open_clip's registry pair, the weights in a hub cache inside it),
  family ``openclip``; or ``colpali_engine_model`` + ``colpali_engine_processor`` (its ColPali-engine build:
  hub caches of the repository ``model_name`` names), family ``modernvbert`` (see ``modernvbert.py``).
  ``--model`` may name ``models/`` or the folder that holds it.

An OpenCLIP model carries no tokenizer in the reference's layout and need not in the hub's: CLIP's is then
read from ``clip_tokenizer`` (``--clip-tokenizer``), else from an installed open_clip.

``detect`` only reads small JSON files, so the command line can refuse a wrong directory at once,
before the server starts; ``load_towers`` imports torch and reads the weights.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models.files import has_tokenizer_files, hub_snapshot, read_json

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
SIGLIP_TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer.model")

EXPECTED = (
    "Expected one of:\n"
    "  - a Hugging Face CLIP directory (config.json with model_type 'clip', model.safetensors or "
    "pytorch_model.bin, tokenizer.json or vocab.json+merges.txt, preprocessor_config.json), "
    "as openai/clip-vit-base-patch32 ships;\n"
    "  - a Hugging Face SigLIP directory (config.json with model_type 'siglip' or 'siglip2', weights, "
    "spiece.model or tokenizer.json, preprocessor_config.json), as google/siglip-base-patch16-224 or "
    "google/siglip2-base-patch16-naflex ships;\n"
    "  - an OpenCLIP directory (open_clip_config.json, open_clip_model.safetensors or "
    "open_clip_pytorch_model.bin, a tokenizer), as laion/CLIP-ViT-B-32-laion2B-s34B-b79K ships;\n"
    "  - a sentence-transformers CLIP directory (modules.json with a CLIP module), "
    "as sentence-transformers/clip-ViT-B-32 ships;\n"
    "  - the models/ directory of the multi2vec-clip inference image "
    "(models/openai_clip + models/openai_clip_processor, models/clip + models/text, "
    "models/siglip + models/model_name, models/openclip, or models/colpali_engine_model + "
    "models/colpali_engine_processor + models/model_name)."
)


@dataclass(frozen=True)
class ModelSource:
    """Where each part of a model lives. Directories may coincide."""

    layout: str
    root: Path
    text_weights: Path
    tokenizer: Path
    vision_weights: Path
    image_processor: Path
    family: str = "clip"
    builtin_demo: bool = False  # the demonstration model shipped in the package (see builtin_demo_source)


def _listing(path: Path) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    except OSError:
        return "(unreadable)"
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return shown or "(empty)"


def _clip_config_problem(path: Path) -> str | None:
    """None if ``path`` holds CLIP weights and config, else what is missing or wrong."""
    config_path = path / "config.json"
    if not config_path.is_file():
        return f"{path} has no config.json"
    config = read_json(config_path)
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "clip":
        return f"{config_path} describes a model of type {model_type!r}, not 'clip'"
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        return f"{path} has config.json but no weights ({' or '.join(WEIGHT_FILES[::2])})"
    return None


def _has_processor(path: Path) -> bool:
    return any((path / name).is_file() for name in PROCESSOR_FILES)


def _check_preprocessing(path: Path, what: str) -> None:
    missing = []
    if not has_tokenizer_files(path):
        missing.append("tokenizer files (tokenizer.json, or vocab.json and merges.txt)")
    if not _has_processor(path):
        missing.append("an image processor file (preprocessor_config.json or processor_config.json)")
    if missing:
        raise ModelLayoutError(f"{what} {path} has CLIP weights but lacks {' and '.join(missing)}.")


def _sentence_transformers_clip_dir(root: Path) -> Path:
    """The folder of the CLIP module listed in ``root/modules.json``."""
    modules = read_json(root / "modules.json")
    if not isinstance(modules, list):
        raise ModelLayoutError(f"{root / 'modules.json'} is not a list of modules")
    tried = []
    for module in modules:
        if not isinstance(module, dict):
            continue
        folder = root / str(module.get("path", ""))
        problem = _clip_config_problem(folder)
        if problem is None:
            return folder
        tried.append(f"{module.get('type', '?')} at {folder}: {problem}")
    raise ModelLayoutError(
        f"{root} is a sentence-transformers directory, but none of its modules is a CLIP model "
        f"({'; '.join(tried) or 'modules.json lists no modules'}). A multilingual text model alone "
        "cannot embed images."
    )


def _reference_models_dir(path: Path) -> Path | None:
    for candidate in (path, path / "models"):
        if (
            (candidate / "openai_clip").is_dir()
            or (candidate / "siglip").is_dir()
            or (candidate / "openclip").is_dir()
            or (candidate / "colpali_engine_model").is_dir()
            or ((candidate / "clip").is_dir() and (candidate / "text").is_dir())
        ):
            return candidate
    return None


def _detect_reference_siglip(models: Path) -> ModelSource:
    """The reference's SigLIP folders: ``models/siglip`` (``SiglipModel.save_pretrained``), the processor
    in a hub cache inside it, and ``models/model_name`` naming the repository that cache holds."""
    weights = models / "siglip"
    name_file = models / "model_name"
    if not name_file.is_file():
        raise ModelLayoutError(f"reference image layout: {weights} needs {name_file}, the model's name ({EXPECTED})")
    repo_id = name_file.read_text().strip()
    config = read_json(weights / "config.json") if (weights / "config.json").is_file() else {}
    if not isinstance(config, dict) or config.get("model_type") != "siglip":
        raise ModelLayoutError(
            f"reference image layout: {weights}/config.json is not a SigLIP model (model_type "
            f"{config.get('model_type') if isinstance(config, dict) else None!r}; the reference loads it with "
            "SiglipModel, which takes model_type 'siglip' only)"
        )
    processor = hub_snapshot(weights, repo_id)
    if processor is None:
        raise ModelLayoutError(
            f"reference image layout: no processor for {repo_id!r} in the hub cache {weights} (expected "
            f"{weights}/models--{repo_id.replace('/', '--')}/snapshots/REVISION with refs/main naming it)"
        )
    missing = _siglip_missing(weights, processor)
    if missing:
        raise ModelLayoutError(
            f"reference image layout: the SigLIP folders {weights} and {processor} lack {' and '.join(missing)} "
            f"(they hold: {_listing(weights)}; {_listing(processor)})"
        )
    return ModelSource("reference-image", models, weights, processor, weights, processor, family="siglip-reference")


def _detect_reference_colpali(models: Path) -> ModelSource:
    """The reference's ColPali-engine folders: ``models/colpali_engine_model`` and
    ``models/colpali_engine_processor``, each a hub cache of the repository ``models/model_name`` names
    (a ModernVBERT bi-encoder, family ``modernvbert``, see ``modernvbert.py``)."""
    name_file = models / "model_name"
    if not name_file.is_file():
        raise ModelLayoutError(f"reference image layout: {models / 'colpali_engine_model'} needs {name_file}")
    repo_id = name_file.read_text().strip()
    found = {}
    for part in ("colpali_engine_model", "colpali_engine_processor"):
        snapshot = hub_snapshot(models / part, repo_id)
        if snapshot is None:
            raise ModelLayoutError(
                f"reference image layout: no {repo_id!r} in the hub cache {models / part} (expected "
                f"{models / part}/models--{repo_id.replace('/', '--')}/snapshots/REVISION with refs/main naming it)"
            )
        found[part] = snapshot
    weights, processor = found["colpali_engine_model"], found["colpali_engine_processor"]
    config = read_json(weights / "config.json") if (weights / "config.json").is_file() else {}
    if not isinstance(config, dict) or config.get("model_type") != "modernvbert":
        raise ModelLayoutError(
            f"reference image layout: {weights}/config.json is not a ModernVBERT model; of colpali-engine's "
            "models the reference image serves the ModernVBERT bi-encoders (BiModernVBert) only"
        )
    if not has_tokenizer_files(processor) or not (processor / "preprocessor_config.json").is_file():
        raise ModelLayoutError(f"reference image layout: {processor} lacks its tokenizer or preprocessor_config.json")
    return ModelSource("reference-image", models, weights, processor, weights, processor, family="modernvbert")


def _detect_reference(models: Path, clip_tokenizer: str | Path | None) -> ModelSource:
    if (models / "colpali_engine_model").is_dir():
        return _detect_reference_colpali(models)
    if (models / "siglip").is_dir():
        return _detect_reference_siglip(models)
    if (models / "openclip").is_dir():
        return _detect_openclip(models / "openclip", clip_tokenizer, layout="reference-image", root=models)
    if (models / "openai_clip").is_dir():
        weights, processor = models / "openai_clip", models / "openai_clip_processor"
        problem = _clip_config_problem(weights)
        if problem:
            raise ModelLayoutError(f"reference image layout: {problem}.")
        if not processor.is_dir():
            processor = weights
        _check_preprocessing(processor, "reference image layout: processor directory")
        return ModelSource("reference-image", models, weights, processor, weights, processor)
    vision = _sentence_transformers_clip_dir(models / "clip")
    _check_preprocessing(vision, "reference image layout: vision model")
    try:
        text = _sentence_transformers_clip_dir(models / "text")
    except ModelLayoutError as exc:
        from vectorizer_module.models.st_text import read_modules

        try:  # a multilingual text model trained into CLIP's space (transformer → pooling → dense)
            read_modules(models / "text")
        except ModelLayoutError as text_exc:
            raise ModelLayoutError(
                f"{models / 'text'} is neither a CLIP model nor a sentence-transformers text model "
                f"(transformer, pooling, dense) such as a multilingual CLIP text encoder: {exc}; {text_exc}"
            ) from None
        return ModelSource(
            "reference-image", models, models / "text", models / "text", vision, vision, family="clip-multilingual"
        )
    _check_preprocessing(text, "reference image layout: text model")
    return ModelSource("reference-image", models, text, text, vision, vision)


def _siglip_missing(weights: Path, processor: Path) -> list[str]:
    """What a SigLIP model lacks of its weights (in ``weights``), tokenizer and image processor files (in
    ``processor``); the same folder in the hub's layout."""
    missing = []
    if not any((weights / name).is_file() for name in WEIGHT_FILES):
        missing.append(f"weights ({' or '.join(WEIGHT_FILES[::2])})")
    if not any((processor / name).is_file() for name in SIGLIP_TOKENIZER_FILES):
        missing.append(f"tokenizer files ({', '.join(SIGLIP_TOKENIZER_FILES)})")
    if not _has_processor(processor):
        missing.append("an image processor file (preprocessor_config.json or processor_config.json)")
    return missing


def _detect_siglip(root: Path) -> ModelSource | None:
    """The source of a Hugging Face SigLIP directory, or None if ``root`` does not hold one."""
    config_path = root / "config.json"
    config = read_json(config_path) if config_path.is_file() else None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in ("siglip", "siglip2"):
        return None
    missing = _siglip_missing(root, root)
    if missing:
        kind = "SigLIP 2" if model_type == "siglip2" else "SigLIP"
        raise ModelLayoutError(
            f"Hugging Face {kind} directory {root} lacks {' and '.join(missing)} (it holds: {_listing(root)})."
        )
    return ModelSource("huggingface", root, root, root, root, root, family=model_type)


def _detect_openclip(
    folder: Path, clip_tokenizer: str | Path | None, *, layout: str = "openclip", root: Path | None = None
) -> ModelSource:
    """An OpenCLIP model: open_clip_config.json and weights in ``folder`` (the hub's layout), or the
    reference image's config.json and hub cache; a tokenizer in it or found (see ``openclip.py``)."""
    from vectorizer_module.models import openclip

    what = "OpenCLIP directory" if layout == "openclip" else "reference image layout: OpenCLIP folder"
    if layout != "openclip" and not openclip.is_reference_config(folder):
        raise ModelLayoutError(
            f"{what} {folder} has no config.json naming model_name, pretrained and model_config, as the "
            f"reference's download.py writes it (it holds: {_listing(folder)})"
        )
    openclip.read_config(folder)  # refuses architectures the conversion does not cover
    missing = []
    if openclip.weights_file(folder) is None:
        where = "" if layout == "openclip" else " in it or in a hub cache snapshot inside it (models--ORG--NAME)"
        missing.append(f"weights ({' or '.join(openclip.WEIGHT_NAMES)}{where})")
    tokenizer = openclip.find_tokenizer(folder, clip_tokenizer)
    if tokenizer is None:
        configured = f" ({clip_tokenizer} holds none)" if clip_tokenizer else ""
        missing.append(
            f"a tokenizer (tokenizer.json, vocab.json + merges.txt, or OpenCLIP's {openclip.BPE_NAME}), in it "
            f"or given with --clip-tokenizer / VECTORIZER_CLIP_TOKENIZER{configured}; CLIP's tokenizer files "
            "from openai/clip-vit-base-patch32 fit every standard OpenCLIP model, and an installed open_clip "
            "package is used by itself"
        )
    if missing:
        raise ModelLayoutError(f"{what} {folder} lacks {' and '.join(missing)} (it holds: {_listing(folder)}).")
    return ModelSource(layout, root or folder, folder, tokenizer, folder, folder, family="openclip")


def detect(path: str | Path, *, clip_tokenizer: str | Path | None = None) -> ModelSource:
    """The layout of the model directory ``path``, or ModelLayoutError saying what was expected.
    ``clip_tokenizer``: CLIP's tokenizer for an OpenCLIP model that carries none (a file or folder)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise ModelLayoutError(f"model directory {root} does not exist. {EXPECTED}")
    if not root.is_dir():
        raise ModelLayoutError(f"model path {root} is a file, not a directory. {EXPECTED}")
    root = root.resolve()
    models = _reference_models_dir(root)
    if models is not None:
        return _detect_reference(models, clip_tokenizer)
    if (root / "modules.json").is_file():
        folder = _sentence_transformers_clip_dir(root)
        _check_preprocessing(folder, "sentence-transformers CLIP module")
        return ModelSource("sentence-transformers", root, folder, folder, folder, folder)
    siglip = _detect_siglip(root)
    if siglip is not None:
        return siglip
    problem = _clip_config_problem(root)
    if problem is not None and (root / "open_clip_config.json").is_file():
        return _detect_openclip(root, clip_tokenizer)
    if problem is None:
        _check_preprocessing(root, "Hugging Face CLIP directory")
        return ModelSource("huggingface", root, root, root, root, root)
    raise ModelLayoutError(f"{root} is not a CLIP model directory ({problem}; it holds: {_listing(root)}). {EXPECTED}")


# entries of a directory that say nothing about a model in it: a fresh ext4 volume's lost+found, dotfiles
_NOT_A_MODEL = ("lost+found",)


def _holds_anything(folder: Path) -> bool:
    try:
        return any(not e.name.startswith(".") and e.name not in _NOT_A_MODEL for e in folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False


def choose_model_dir(setting: str) -> tuple[Path, list[str]]:
    """The directory to serve from the model setting, which may list several separated by ``:``: the
    first that holds anything (a directory that is missing or empty, such as an unmounted volume's
    mount point, is passed over). Also what was passed over and why, for the start-up log.

    The container image lists the reference image's ``/app/models`` before the model baked into it, so
    a volume mounted where the reference reads its model wins, as it does there. A directory that holds
    files but no model is served and fails with its own error: it never falls back silently."""
    candidates = [part for part in setting.split(":") if part]
    if not candidates:
        raise ModelLayoutError("the model setting names no directory")
    skipped = []
    for candidate in candidates:
        folder = Path(candidate)
        if _holds_anything(folder):
            return folder, skipped
        skipped.append(f"{candidate} ({'empty' if folder.is_dir() else 'missing'})")
    if len(candidates) == 1:
        return Path(candidates[0]), skipped  # detect() says what is wrong with it
    raise ModelLayoutError(f"none of the model directories holds anything: {', '.join(skipped)}")


def unreadable_files(root: str | Path, uid: int | None = None, gids: Sequence[int] | None = None) -> list[Path]:
    """Files under ``root`` that the user ``uid`` (default: this process's) cannot read, by their mode
    bits: a model volume written by another user with mode 0600 is the usual case in a container whose
    service runs unprivileged, and the libraries that load weights report it as a missing file."""
    uid = os.geteuid() if uid is None else uid
    gids = set(os.getgroups() + [os.getegid()] if gids is None else gids)
    if uid == 0:
        return []
    refused = []
    for path in sorted(Path(root).rglob("*")):
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            continue
        wanted = stat.S_IRUSR | stat.S_IXUSR if stat.S_ISDIR(info.st_mode) else stat.S_IRUSR
        shift = 0 if info.st_uid == uid else 3 if info.st_gid in gids else 6
        if (info.st_mode & (wanted >> shift)) != wanted >> shift:
            refused.append(path)
    return refused


def require_readable(source: ModelSource) -> None:
    """Refuse, saying which files and why, a model this process cannot read in full."""
    refused = unreadable_files(source.root)
    if refused:
        names = ", ".join(
            f"{p} (mode {stat.S_IMODE(p.stat().st_mode):o}, owner uid {p.stat().st_uid})" for p in refused[:3]
        )
        more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        raise ModelLayoutError(
            f"cannot read {names}{more} as uid {os.geteuid()}: make the model's files readable "
            "(chmod -R a+rX) or run the service as their owner"
        )


BUILTIN_DEMO_DIR = Path(__file__).resolve().parent.parent / "default_model"
BUILTIN_DEMO_NAME = "clip-vectorizer-demo-shapes"


def builtin_demo_source() -> ModelSource:
    """The built-in demonstration model (a small CLIP that knows shapes and colours), served when no
    model is configured."""
    return replace(detect(BUILTIN_DEMO_DIR), builtin_demo=True)


def tower_classes(family: str) -> tuple[type, type]:
    """The query and items tower classes of a model family (each has ``from_dir(weights, preprocessing)``)."""
    from vectorizer_module.models.hf_clip import HFClipTextTower, HFClipVisionTower

    if family == "clip":
        return HFClipTextTower, HFClipVisionTower
    if family == "siglip":
        from vectorizer_module.models.siglip import SiglipTextTower, SiglipVisionTower

        return SiglipTextTower, SiglipVisionTower
    if family == "siglip-reference":
        from vectorizer_module.models.siglip import SiglipReferenceTextTower, SiglipVisionTower

        return SiglipReferenceTextTower, SiglipVisionTower
    if family == "siglip2":
        from vectorizer_module.models.siglip2 import Siglip2TextTower, Siglip2VisionTower

        return Siglip2TextTower, Siglip2VisionTower
    if family == "clip-multilingual":
        from vectorizer_module.models.st_text import SentenceTransformerTextTower

        return SentenceTransformerTextTower, HFClipVisionTower
    if family == "openclip":
        from vectorizer_module.models.openclip import OpenClipTextTower, OpenClipVisionTower

        return OpenClipTextTower, OpenClipVisionTower
    if family == "modernvbert":
        from vectorizer_module.models.modernvbert import ModernVBertTextTower, ModernVBertVisionTower

        return ModernVBertTextTower, ModernVBertVisionTower
    raise ModelLayoutError(f"no towers for the model family {family!r}")


def load_towers(source: ModelSource, *, name: str | None = None, builtin_demo: bool = False):
    """Both towers of ``source`` on the CPU in float32, with the model's description. The built-in demo
    model (``builtin_demo`` here or on ``source``) says so in /meta."""
    from vectorizer_module.models.base import ModelInfo, Towers

    text_class, vision_class = tower_classes(source.family)
    query = text_class.from_dir(source.text_weights, source.tokenizer)
    if hasattr(vision_class, "beside"):  # one encoder for both towers (ModernVBERT)
        items = vision_class.beside(query, source.image_processor)
    else:
        items = vision_class.from_dir(source.vision_weights, source.image_processor)
    if query.embedding_dim != items.embedding_dim:
        raise ModelLayoutError(
            f"the text tower ({source.text_weights}) gives {query.embedding_dim}-d vectors but the vision "
            f"tower ({source.vision_weights}) gives {items.embedding_dim}-d: they are not one CLIP space"
        )
    builtin_demo = builtin_demo or source.builtin_demo
    default_name = BUILTIN_DEMO_NAME if builtin_demo else source.root.name
    info = ModelInfo(
        name=name or default_name,
        path=str(source.root),
        family=source.family,
        layout=source.layout,
        dimension=query.embedding_dim,
        text_max_tokens=query.max_length,
        image_size=items.image_size,
        builtin_demo=builtin_demo,
    )
    return Towers(query=query, items=items, info=info)
