"""A long text is cut before tokenising, and the tower still sees exactly the ids the whole text gives
after truncation: on texts of spaces, punctuation, CJK, digits and the characters that normalisation
and CLIP's pre-tokenizer treat together (capital sigma, combining marks, Hangul jamo, contractions,
special-token strings), with tokenizers whose vocabularies do and do not join those characters."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import CLIPTokenizer

from clip_training.random_models.clip import byte_level_tokenizer
from clip_training.random_models.multilingual import save_random_text_model
from clip_training.vocab import tokenizer_for_words
from vectorizer_module.models.loading import builtin_demo_source, detect, load_towers
from vectorizer_module.models.text_cut import TextCutter

CONTEXT = 77
# pieces that sit next to each other across a cut: each is a place where a careless cut changes a token
PIECES = [
    " ", "  ", "\t", "\n", "a", "cat", "Photo", "中文", "字符", "，", "。", "!", "!!", "?!", "...", "1", "42", "'s",
    "'ll", "'", "<|endoftext|>", "<|", "Σ", "ΑΣ", "ς", ".", "e\u0301", "\u0301", "İ", "ﬁ", "\u1100", "\u1161",
    "\u11a8", "한", "\u200d", "😀", "©", "ß",
]  # fmt: skip


def joining_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary joins characters across many of the boundaries above (learnt, as
    CLIP's was, from words; here words made of the pieces)."""
    words = Counter({"中文字符": 5, "字符中文": 3, "!!!!": 4, "?!?!": 2, "ab": 3, "catcat": 2, "ς": 1, "σς": 1})
    words.update({"1": 1, "é": 2, "한한": 1, "😀😀": 1, "...": 2, "，。": 1})
    return tokenizer_for_words(words, CONTEXT)


TOKENIZERS = {
    "joining": joining_tokenizer,
    "byte-level": lambda: byte_level_tokenizer(max_length=CONTEXT),
    "demo-model": lambda: load_towers(builtin_demo_source()).query.tokenizer,
}


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer([text], truncation=True, max_length=CONTEXT)["input_ids"][0]


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def tokenizer(request):
    return TOKENIZERS[request.param]()


LONG_TEXTS = {
    "spaces then words": " " * 150_000 + "a cat " * 1000,
    "one word in spaces": "a" + " " * 199_998 + "b",
    "punctuation": "!" * 200_000,
    "mixed punctuation": "!?.,;:-" * 28_000,
    "cjk": "中文字符" * 50_000,
    "cjk sentences": "中文，字符。" * 33_333,
    "digits": "1" * 200_000,
    "words": "Lorem ipsum dolor sit amet " * 7_000,
    "sigma": ("ΑΣ." * 3 + "Α ") * 20_000,
}


@pytest.mark.parametrize("name", sorted(LONG_TEXTS))
def test_long_texts_give_the_ids_of_the_whole_text(tokenizer, name):
    text = LONG_TEXTS[name]
    cutter = TextCutter.for_tokenizer(tokenizer, CONTEXT)
    cut = cutter.cut(text)
    assert text.startswith(cut)
    assert ids(tokenizer, cut) == ids(tokenizer, text)


def test_texts_without_spaces_are_cut_where_the_vocabulary_allows():
    """So that a cut happens at all: CJK, digits and punctuation runs, on a byte-level vocabulary."""
    tokenizer = byte_level_tokenizer(max_length=CONTEXT)
    cutter = TextCutter.for_tokenizer(tokenizer, CONTEXT)
    for name in ("cjk", "cjk sentences", "digits", "punctuation", "words"):
        assert len(cutter.cut(LONG_TEXTS[name])) < 2000, name


def test_a_vocabulary_that_joins_characters_is_never_cut_between_them():
    tokenizer = joining_tokenizer()
    cutter = TextCutter.for_tokenizer(tokenizer, CONTEXT)
    assert cutter.cut(LONG_TEXTS["punctuation"]) == LONG_TEXTS["punctuation"]  # "!!" is a token: no cut
    assert len(cutter.cut(LONG_TEXTS["words"])) < 2000  # spaces still cut


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=60), st.integers(1, 200), st.sampled_from([1, 16]))
def test_any_mix_of_awkward_pieces_gives_the_ids_of_the_whole_text(tokenizer, pattern, repeats, first_cut):
    """``first_cut=1`` puts every cut right after the tokens kept, where a wrong boundary would show."""
    text = "".join(pattern) * repeats
    cutter = TextCutter.for_tokenizer(tokenizer, CONTEXT, first_cut=first_cut)
    assert ids(tokenizer, cutter.cut(text)) == ids(tokenizer, text)


def test_a_multilingual_bert_tokenizer_is_cut_at_spaces(tmp_path):
    from transformers import AutoTokenizer

    root = save_random_text_model(tmp_path / "multilingual", 16)
    transformer = next(p for p in root.rglob("tokenizer.json")).parent
    tokenizer = AutoTokenizer.from_pretrained(str(transformer))
    cutter = TextCutter.for_tokenizer(tokenizer, 128)
    text = "Ein Hund läuft über die Wiese, 一只狗 " * 5000
    cut = cutter.cut(text)
    assert len(cut) < 5000
    assert (
        tokenizer([cut], truncation=True, max_length=128)["input_ids"]
        == tokenizer([text], truncation=True, max_length=128)["input_ids"]
    )


def spans(tokenizer, text: str) -> list[tuple[int, tuple[int, int]]]:
    encoding = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
    return list(zip(encoding.ids, encoding.offsets))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), min_size=2, max_size=30), st.integers(1, 6))
def test_no_token_spans_a_boundary_and_the_prefix_keeps_every_token_before_it(tokenizer, pattern, repeats):
    """The claim the cut rests on, at every boundary the cutter accepts in the text: the whole text's
    tokens that end before it are exactly the prefix's (same ids, same places)."""
    text = "".join(pattern) * repeats
    cutter = TextCutter.for_tokenizer(tokenizer, CONTEXT)
    whole = spans(tokenizer, text)
    for index in range(1, len(text)):
        if cutter.is_boundary(text, index):
            before = [(i, o) for i, o in whole if o[1] <= index]
            prefix = [(i, o) for i, o in spans(tokenizer, text[: index + 1]) if o[1] <= index]
            assert prefix == before, (text, index)
            assert not [o for _, o in whole if o[0] < index < o[1]], (text, index)


def test_tokenizers_that_do_not_split_at_spaces_are_never_cut():
    """SigLIP 2's Gemma tokenizer replaces spaces before it splits: its pieces may span words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(vocab={"a": 0, "▁": 1, "<unk>": 2}, merges=[], unk_token="<unk>"))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    assert TextCutter.for_tokenizer(PreTrainedTokenizerFast(tokenizer_object=backend), 64) is None


class Recording:
    """A tokenizer that records the length of every text it is given."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.lengths: list[int] = []

    def __call__(self, texts, **kwargs):
        self.lengths += [len(text) for text in texts]
        return self.inner(texts, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_the_text_tower_tokenises_a_long_text_cut_and_gets_the_same_ids(tiny_model):
    tower = load_towers(detect(tiny_model)).query
    text = "a dog " * 40_000
    whole = tower.tokenizer([text], padding=True, truncation=True, max_length=tower.max_length, return_tensors="pt")
    tower.tokenizer = Recording(tower.tokenizer)
    cut = tower.preprocess([text])["input_ids"]
    assert tower.tokenizer.lengths and max(tower.tokenizer.lengths) < 2000
    assert torch.equal(cut, whole["input_ids"])
