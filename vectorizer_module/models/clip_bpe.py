"""CLIP's byte-level BPE vocabulary layout, shared by every CLIP tokenizer built here (the random
models' byte-level one, the demo model's word-level one, and OpenCLIP's from its merges file)."""

from __future__ import annotations

from collections.abc import Sequence


def bytes_to_unicode() -> dict[int, str]:
    """The byte → printable character table of GPT-2 and CLIP's byte-level BPE: printable Latin-1 bytes
    stand for themselves, the others map to code points from 256 up."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def clip_vocabulary(merged: Sequence[str], vocab_size: int | None = None) -> dict[str, int]:
    """Token → id in CLIP's order: the 256 byte symbols, the same with the end-of-word mark ``</w>``,
    ``merged`` (one entry per merge, in order), unused fillers up to ``vocab_size`` if given, then
    ``<|startoftext|>`` and ``<|endoftext|>`` (so with ``vocab_size=49408`` they get CLIP's ids 49406
    and 49407)."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + list(merged)
    if vocab_size is not None:
        if vocab_size < len(tokens) + 2:
            raise ValueError(f"vocab_size {vocab_size} is below the {len(tokens) + 2} tokens needed")
        tokens += [f"<|unused{i}|>" for i in range(vocab_size - len(tokens) - 2)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}
