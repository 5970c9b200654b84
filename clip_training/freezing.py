"""Which parameters of a tower train: freezing by parameter name (a name, a prefix or a glob), or a
tower's input embeddings and its first N transformer layers, as each family names them
(``layer_prefixes`` / ``embedding_prefixes`` of the tower interface)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from vectorizer_module.models.base import Tower


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p) for p in patterns)


def _set_trainable(tower: Tower, patterns: Sequence[str], trainable: bool) -> list[str]:
    patterns = tuple(patterns) or ("*",)
    changed = []
    for name, parameter in tower.named_parameters():
        if _matches(name, patterns):
            parameter.requires_grad_(trainable)
            changed.append(name)
    if not changed:
        raise ValueError(f"no parameter of the {tower.modality} tower matches {list(patterns)}")
    return changed


def freeze(tower: Tower, *patterns: str) -> list[str]:
    """Stop training the parameters whose names match (all when none given); the names changed."""
    return _set_trainable(tower, patterns, False)


def unfreeze(tower: Tower, *patterns: str) -> list[str]:
    return _set_trainable(tower, patterns, True)


def freeze_first_layers(tower: Tower, count: int) -> list[str]:
    """Freeze the input embeddings and the first ``count`` transformer layers."""
    prefixes = tower.layer_prefixes()
    if not 0 <= count <= len(prefixes):
        raise ValueError(f"the {tower.modality} tower has {len(prefixes)} layers; cannot freeze {count}")
    if count == 0:
        return []
    return freeze(tower, *tower.embedding_prefixes(), *prefixes[:count])


def trainable_parameter_names(tower: Tower) -> list[str]:
    return [name for name, p in tower.named_parameters() if p.requires_grad]
