"""Cut a long text before tokenising it, to what the text tower's context can hold, without changing a
single token of what the tower sees.

Tokenising a 200,000-character text costs 0.1-0.5 s; the tower keeps its first 77 tokens. A prefix of
the text gives exactly the same first tokens when it ends at a *hard boundary*: a point that no step of
the tokenizer looks across. Then the prefix's tokens are the whole text's, up to that point; if there
are at least as many as the context holds, truncating either gives the same ids, bit for bit.

Hard boundaries, from the tokenizer's own description (``tokenizer.json``), never guessed:

- an ASCII whitespace character, where the pre-tokenizer splits on whitespace (CLIP's regular
  expression, BERT's, ``Whitespace``, ``WhitespaceSplit``, ``Metaspace`` with ``split``) and the
  normalizer keeps whitespace as whitespace. SigLIP 2's Gemma tokenizer does not split there (its pieces
  may span words), and SigLIP's sentencepiece tokenizer has no such description: neither is cut;
- for CLIP's byte-level BPE (its normalizer, regular expression and ``</w>`` words), also any point
  between two characters whose bytes no token of the vocabulary holds side by side: no merge can join
  them, so BPE works on the two sides apart. This cuts texts without spaces (CJK, long runs of digits)
  where a vocabulary allows, and never where a normalisation step could join the two characters.

A prefix is taken one character past the boundary (so the last word before it is not marked as a
word end, as CLIP's BPE marks a text's last word) and checked: it must give at least the context plus a
margin for that character. If it does not, a longer prefix is tried, up to the whole text.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from typing import Any

from tokenizers import Tokenizer

from vectorizer_module.models.clip_bpe import bytes_to_unicode

FIRST_CUT = 16  # characters per context token in the first prefix tried
SEARCH = 256  # characters searched back from a cut point for a hard boundary
MARGIN = 8  # tokens the character after the boundary may add
ASCII_SPACE = frozenset(" \t\n\r\x0b\x0c")
CLIP_PATTERN = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
_SPLITTING = frozenset({"BertPreTokenizer", "Whitespace", "WhitespaceSplit"})
_KEEPING_SPACE = frozenset(
    {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "StripAccents", "BertNormalizer", "Prepend"}
)


class TextCutter:
    def __init__(
        self, count: Callable[[str], int], need: int, joinable: bytearray | None = None, first_cut: int = FIRST_CUT
    ) -> None:
        """``count``: tokens of a text, special tokens included, untruncated; ``need``: the context;
        ``joinable``: for CLIP's BPE, 1 at ``first * 256 + second`` for each byte pair a token holds;
        ``first_cut``: characters per context token in the first prefix tried (the tests try 1, so that
        every cut falls right after the tokens kept, where a wrong one would show)."""
        self.count = count
        self.need = need
        self.joinable = joinable
        self.first_cut = first_cut

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, need: int, first_cut: int = FIRST_CUT) -> TextCutter | None:
        """A cutter for a transformers tokenizer, or None where no hard boundary is known."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or getattr(tokenizer, "truncation_side", "right") != "right":
            return None
        description = backend.to_str()
        spec = json.loads(description)
        if _is_clip(spec):
            joinable = _joinable_pairs(spec["model"]["vocab"])
        elif _splits_on_space(spec.get("pre_tokenizer")) and _keeps_space(spec.get("normalizer")):
            joinable = None
        else:
            return None
        counter = Tokenizer.from_str(description)  # our own copy: transformers sets truncation on its
        counter.no_truncation()
        counter.no_padding()

        def count(text: str) -> int:
            return len(counter.encode(text, add_special_tokens=True).ids)

        return cls(count, need, joinable, first_cut)

    def cut(self, text: str) -> str:
        """``text``, or the shortest checked prefix of it that tokenises to the same first ``need`` ids."""
        length = self.first_cut * self.need
        while length < len(text):
            boundary = self._boundary_before(text, length)
            if boundary is not None:
                prefix = text[: boundary + 1]
                if self.count(prefix) >= self.need + MARGIN:
                    return prefix
            length *= 2
        return text

    def _boundary_before(self, text: str, end: int) -> int | None:
        """The last hard boundary at or before ``end`` (the index of the character after it), within
        ``SEARCH`` characters; None if there is none there."""
        for index in range(end, max(0, end - SEARCH), -1):
            if self.is_boundary(text, index):
                return index
        return None

    def is_boundary(self, text: str, index: int) -> bool:
        """Whether no token of ``text`` spans from before ``index`` to it or after (0 < index < len)."""
        return text[index] in ASCII_SPACE or (self.joinable is not None and self._apart(text, index))

    def _apart(self, text: str, index: int) -> bool:
        """Whether CLIP's tokenizer keeps ``text[index - 1]`` and ``text[index]`` apart, whatever else."""
        before, after = text[index - 1], text[index]
        if "'" in text[max(0, index - 3) : index + 1] or "<" in text[max(0, index - 14) : index + 1]:
            return False  # contractions ('s, 'll) and the special tokens are matched across characters
        if not _stable(before, after):
            return False
        last, first = before.lower().encode()[-1], after.lower().encode()[0]
        return not self.joinable[last * 256 + first]


def _stable(before: str, after: str) -> bool:
    """NFC treats the two characters apart (neither combines, the pair does not compose), and ``before``
    is a letter, digit, punctuation or symbol. (The tokenizers' lower case maps each character alone:
    no final-sigma rule, unlike Python's ``str.lower``.)"""
    if unicodedata.combining(after) or unicodedata.combining(before):
        return False
    pair = before + after
    return unicodedata.normalize("NFC", pair) == pair and unicodedata.category(before)[0] in "LNPS"


def _is_clip(spec: dict) -> bool:
    normalizers = (spec.get("normalizer") or {}).get("normalizers") or []
    pre = (spec.get("pre_tokenizer") or {}).get("pretokenizers") or []
    model = spec.get("model") or {}
    return (
        [n.get("type") for n in normalizers] == ["NFC", "Replace", "Lowercase"]
        and normalizers[1].get("content") == " "
        and len(pre) == 2
        and pre[0].get("type") == "Split"
        and pre[0].get("pattern", {}).get("Regex") == CLIP_PATTERN
        and pre[0].get("invert") is True
        and pre[1].get("type") == "ByteLevel"
        and model.get("type") == "BPE"
        and model.get("end_of_word_suffix") == "</w>"
        and not model.get("dropout")
    )


def _joinable_pairs(vocab: dict[str, int]) -> bytearray:
    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    table = bytearray(65536)
    for token in vocab:
        symbols = [byte_of.get(char) for char in token.removesuffix("</w>")]
        for first, second in zip(symbols, symbols[1:]):
            if first is None or second is None:
                table[:] = b"\x01" * 65536  # a token outside the byte alphabet: assume nothing is apart
                return table
            table[first * 256 + second] = 1
    return table


def _splits_on_space(pre: dict | None) -> bool:
    if not pre:
        return False
    kind = pre.get("type")
    if kind == "Sequence":
        return any(_splits_on_space(part) for part in pre.get("pretokenizers", []))
    if kind == "Metaspace":
        return bool(pre.get("split", True))
    if kind == "Split":
        return pre.get("pattern", {}).get("Regex") == CLIP_PATTERN and pre.get("invert") is True
    return kind in _SPLITTING


def _keeps_space(normalizer: dict | None) -> bool:
    if not normalizer:
        return True
    kind = normalizer.get("type")
    if kind == "Sequence":
        return all(_keeps_space(part) for part in normalizer.get("normalizers", []))
    if kind == "Replace":
        return normalizer.get("content") == " "
    return kind in _KEEPING_SPACE
