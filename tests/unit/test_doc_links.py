"""Every relative link in the README and docs/ names a file or folder of the repository (the raw
benchmark reports move and get pruned; a stale link should fail here, not on a reader)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(text: str) -> list[str]:
    """The targets of ``[text](target)`` links that point into the repository (no URL scheme, no
    bare anchor), without their ``#anchor``."""
    targets = (match.group(1) for match in LINK.finditer(text))
    return [t.split("#", 1)[0] for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", t)]


def test_links_are_found():
    text = "see [a](docs/a.md#x), [b](https://example.org/b), [c](#c), [d](bench/d.json)"
    assert relative_links(text) == ["docs/a.md", "bench/d.json"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(document):
    missing = [t for t in relative_links(document.read_text(encoding="utf-8")) if not (document.parent / t).exists()]
    assert not missing, f"{document.relative_to(ROOT)} links to missing files: {missing}"
