"""Random-weight multilingual CLIP text models (DistilBERT → mean pooling → Dense into CLIP's space),
written as sentence-transformers writes them, for tests and ``clip-train make-random-model``.

``hub`` format is that of ``sentence-transformers/clip-ViT-B-32-multilingual-v1`` (``0_Transformer/``,
``1_Pooling`` with the older boolean keys, ``2_Dense/pytorch_model.bin``); ``st6`` is what
sentence-transformers 6 saves (the transformer in the root, ``2_Dense/model.safetensors``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import DistilBertConfig, DistilBertModel, PreTrainedTokenizerFast

from vectorizer_module.models.hf_common import quiet_transformers

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# characters of a few scripts, so that texts in several languages tokenize to more than [UNK]
CHARACTERS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-"
    "äöüßéèêàçñ"
    "абвгдежзийклмнопрстуфхцчшщыэюя"
    "一只猫狗红色的车"
)
ARCHITECTURES = {
    "tiny": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128),
    # distilbert-base-multilingual-cased, the encoder of clip-ViT-B-32-multilingual-v1
    "distilbert-multilingual": dict(
        dim=768, n_layers=6, n_heads=12, hidden_dim=3072, max_position_embeddings=512, vocab_size=119547
    ),
}


def wordpiece_tokenizer(max_length: int = 128) -> PreTrainedTokenizerFast:
    """A cased WordPiece tokenizer over single characters (BERT's special tokens and template)."""
    pieces = list(SPECIALS) + list(CHARACTERS) + ["##" + c for c in CHARACTERS]
    vocab = {piece: index for index, piece in enumerate(dict.fromkeys(pieces))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def save_random_text_model(
    target: str | Path,
    out_features: int,
    *,
    architecture: str = "tiny",
    form: str = "hub",
    seed: int = 0,
    max_seq_length: int = 128,
) -> Path:
    """Write a random multilingual text model whose vectors have ``out_features`` dimensions."""
    if form not in ("hub", "st6"):
        raise ValueError(f"unknown form {form!r}; choose hub or st6")
    target = Path(target)
    tokenizer = wordpiece_tokenizer(max_seq_length)
    settings = dict(ARCHITECTURES[architecture])
    settings.setdefault("vocab_size", len(tokenizer))
    torch.manual_seed(seed)
    encoder = DistilBertModel(DistilBertConfig(**settings))
    dense = torch.nn.Linear(settings["dim"], out_features, bias=False)
    transformer_dir = target / "0_Transformer" if form == "hub" else target
    with quiet_transformers():
        encoder.save_pretrained(str(transformer_dir))
        tokenizer.save_pretrained(str(transformer_dir))
    prefix = "sentence_transformers.models." if form == "hub" else "sentence_transformers.base.modules."
    _write_json(
        target / "modules.json",
        [
            {
                "idx": 0,
                "name": "0",
                "path": "0_Transformer" if form == "hub" else "",
                "type": prefix + ("Transformer" if form == "hub" else "transformer.Transformer"),
            },
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"
                if form == "hub"
                else "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
            },
            {"idx": 2, "name": "2", "path": "2_Dense", "type": prefix + ("Dense" if form == "hub" else "dense.Dense")},
        ],
    )
    _write_json(
        transformer_dir / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False}
    )
    if form == "hub":
        _write_json(
            target / "1_Pooling" / "config.json",
            {
                "word_embedding_dimension": settings["dim"],
                "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
        )
    else:
        _write_json(
            target / "1_Pooling" / "config.json",
            {"embedding_dimension": settings["dim"], "pooling_mode": "mean", "include_prompt": True},
        )
    _write_json(
        target / "2_Dense" / "config.json",
        {
            "in_features": settings["dim"],
            "out_features": out_features,
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
        },
    )
    state = {"linear.weight": dense.weight.detach().contiguous()}
    if form == "hub":
        torch.save(state, target / "2_Dense" / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(state, str(target / "2_Dense" / "model.safetensors"))
    return target
