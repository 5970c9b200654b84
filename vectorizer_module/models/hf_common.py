"""What the families built on transformers share: a quiet ``from_pretrained``, and the one ``from_dir``
of every tower that is a transformers model plus its tokenizer or image processor (CLIP's and SigLIP's)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
import transformers


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence the load report (the other tower's keys show as 'unexpected') and progress bars."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.utils.logging.enable_progress_bar()


class PretrainedTower:
    """Mixin of a tower built as ``cls(model, preprocessing)`` from a checkpoint directory: the model is
    ``model_class`` with the config ``config_of(weights_dir, part)`` returns (``part``: "text" for a text
    tower, "vision" for an image tower, so a full checkpoint gives each tower its half), read in float32;
    the preprocessing (a tokenizer or an image processor) is ``preprocessing_class``, read from its own
    directory or the weights'. List it before ``TextTower`` / ``VisionTower`` among the bases."""

    modality: ClassVar[str]
    model_class: ClassVar[type]
    preprocessing_class: ClassVar[type]
    config_of: ClassVar[Callable[[Path, str], Any]]

    @classmethod
    def from_dir(cls, weights_dir: Path, preprocessing_dir: Path | None = None) -> Self:
        part = "text" if cls.modality == "text" else "vision"
        with quiet_transformers():
            model = cls.model_class.from_pretrained(
                str(weights_dir), config=cls.config_of(weights_dir, part), local_files_only=True, dtype=torch.float32
            )
            preprocessing = cls.preprocessing_class.from_pretrained(
                str(preprocessing_dir or weights_dir), local_files_only=True
            )
        return cls(model, preprocessing)  # type: ignore[call-arg]
