"""What Weaviate's reference multi2vec-clip image does with each model layout, so that a user switching
from it keeps valid stored vectors and sees the ``/meta`` keys their tools read.

Normalisation (the image's ``clip.py``): its OpenAI-CLIP path (``models/openai_clip``, transformers'
``CLIPModel``) and its OpenCLIP path divide each vector by its norm; its SigLIP path returns
``get_*_features`` as they are; its sentence-transformers path (``models/clip`` + ``models/text``)
returns ``SentenceTransformer.encode``, normalised only where the model's ``modules.json`` lists a
``Normalize`` module. ``/meta`` (its ``meta.py``): ``CLIPConfig.to_dict()`` for OpenAI CLIP,
``{"clip_model": ..., "text_model": ...}`` for the sentence-transformers path, the saved configuration
for the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vectorizer_module.models.files import read_json
from vectorizer_module.models.loading import ModelSource

SIGLIP_FAMILIES = ("siglip", "siglip2", "siglip-reference")


def _sentence_transformers_roots(source: ModelSource) -> tuple[Path, Path] | None:
    """(text root, vision root) of a source the reference image would serve through sentence-transformers,
    each the folder with ``modules.json``; None for the others."""
    if source.layout == "sentence-transformers":
        return source.root, source.root
    if source.layout == "reference-image" and (source.root / "clip").is_dir() and (source.root / "text").is_dir():
        return source.root / "text", source.root / "clip"
    return None


def _lists_normalize(root: Path) -> bool:
    modules = read_json(root / "modules.json") if (root / "modules.json").is_file() else []
    return any(str(m.get("type", "")).endswith("Normalize") for m in modules if isinstance(m, dict))


def normalization(source: ModelSource) -> dict[str, bool]:
    """Whether the reference image L2-normalises text and image vectors of ``source``'s layout."""
    roots = _sentence_transformers_roots(source)
    if roots is not None:
        text, vision = roots
        return {"text": _lists_normalize(text), "image": _lists_normalize(vision)}
    if source.family in SIGLIP_FAMILIES:
        return {"text": False, "image": False}
    return {"text": True, "image": True}  # transformers' CLIP (its openai_clip path) and OpenCLIP


def _config(folder: Path) -> dict[str, Any]:
    """A transformers configuration as ``to_dict()`` gives it (every default filled in); in a
    sentence-transformers folder, its transformer module's (the folder itself, or ``0_Transformer/``)."""
    from transformers import AutoConfig

    from vectorizer_module.models.hf_common import quiet_transformers

    if not (folder / "config.json").is_file() and (folder / "modules.json").is_file():
        first = read_json(folder / "modules.json")[0]
        folder = folder / str(first.get("path", ""))
    with quiet_transformers():
        return AutoConfig.from_pretrained(str(folder), local_files_only=True).to_dict()


def meta(source: ModelSource) -> dict[str, Any]:
    """The reference image's ``/meta`` body for ``source``'s layout."""
    roots = _sentence_transformers_roots(source)
    if roots is not None:
        return {"clip_model": _config(source.vision_weights), "text_model": _config(source.text_weights)}
    if source.family == "openclip":  # open_clip_config.json, or the reference's models/openclip/config.json
        from vectorizer_module.models.openclip import config_file

        return read_json(config_file(source.vision_weights))
    if source.family in SIGLIP_FAMILIES:  # the saved config.json (the reference's models/siglip one)
        return read_json(source.text_weights / "config.json")
    if source.family == "modernvbert":  # what its download step wrote over the hub cache's top config.json
        return read_json(source.root / "colpali_engine_model" / "config.json")
    return _config(source.vision_weights)
