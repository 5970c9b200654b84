"""A word-level CLIP tokenizer: CLIP's byte-level BPE with merges learnt so that every word of a small
corpus is one token.

The result is an ordinary ``CLIPTokenizer`` (``vocab.json`` + ``merges.txt``): the 512 byte symbols
come first, as in CLIP, so a word the corpus never had still tokenizes (into smaller pieces). Learning
the merges is the classic BPE procedure on word counts, with ties broken by the pair's text, so the same
corpus always gives the same tokenizer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from transformers import CLIPTokenizer

from vectorizer_module.models.clip_bpe import bytes_to_unicode, clip_vocabulary

_WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")


def corpus_words(texts: Iterable[str]) -> Counter[str]:
    """Word counts as CLIP's pre-tokenizer splits lower-cased ASCII text."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(_WORD.findall(text.lower()))
    return counts


def learn_merges(words: Counter[str]) -> list[tuple[str, str]]:
    """BPE merges until every word of ``words`` is a single symbol (word-final symbols end in ``</w>``)."""
    byte_char = bytes_to_unicode()
    segmented = {}
    for word, count in words.items():
        symbols = [byte_char[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        segmented[word] = (symbols, count)
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in segmented.values():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        for word, (symbols, count) in segmented.items():
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            segmented[word] = (merged, count)


def word_level_tokenizer(texts: Iterable[str], max_length: int = 77, vocab_size: int | None = None) -> CLIPTokenizer:
    """A CLIP tokenizer whose merges make each word of ``texts`` a single token. With ``vocab_size``, unused
    entries pad the vocabulary so that the special tokens get the last two ids, as in CLIP (49,406 and
    49,407 for ``vocab_size=49408``)."""
    return tokenizer_for_words(corpus_words(texts), max_length, vocab_size)


def tokenizer_for_words(words: Counter[str], max_length: int = 77, vocab_size: int | None = None) -> CLIPTokenizer:
    """A CLIP tokenizer whose merges make each of ``words`` (any Unicode) a single token."""
    merges = learn_merges(words)
    symbols = set(bytes_to_unicode().values())
    known = symbols | {s + "</w>" for s in symbols}
    merged = []
    for left, right in merges:  # a merge whose result is already a token adds no entry
        if left + right not in known:
            merged.append(left + right)
            known.add(left + right)
    return CLIPTokenizer(
        vocab=clip_vocabulary(merged, vocab_size), merges=[tuple(pair) for pair in merges], model_max_length=max_length
    )
