"""Random-weight SigLIP models of the real architecture, written as the hub ships them.

No model hub is reachable from our machines, so tests build their SigLIP here: a tiny ``SiglipModel``
(``model_type: siglip``) with a sentencepiece tokenizer learnt from a small built-in corpus, loaded by
transformers' own ``SiglipTokenizer`` as ``google/siglip-base-patch16-224``'s ``spiece.model`` is (ids 0
``<pad>``, 1 ``</s>`` = eos = pad, 2 ``<unk>``; input ids only, no attention mask; 64 tokens), and a
``SiglipImageProcessor`` file (square resize, mean/std 0.5). The directory holds what the hub's does:
``config.json``, ``model.safetensors``, ``spiece.model``, ``tokenizer_config.json`` and
``preprocessor_config.json``. ``naflex=True`` writes a tiny SigLIP 2 NaFlex (``model_type: siglip2``) with a
byte-fallback BPE tokenizer in ``Siglip2Tokenizer`` (``tokenizer.json``) instead.
"""

from __future__ import annotations

import io
import itertools
import tempfile
from pathlib import Path

import torch
from transformers import Siglip2Tokenizer, SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipTokenizer

from vectorizer_module.models.hf_common import quiet_transformers

TINY = dict(
    text_config=dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64
    ),
    vision_config=dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    ),
)
MAX_LENGTH = 64
_WORDS = (
    "a photo of the cat dog red blue green circle square triangle on white black background small large "
    "picture drawing diagram with and in two three car tree house person sky over under near far"
).split()


def _corpus() -> list[str]:
    """Deterministic sentences over a small word list (and a few odd characters), for sentencepiece."""
    lines = [" ".join(words) for words in itertools.permutations(_WORDS[:8], 4)]
    lines += [" ".join(_WORDS[i : i + 6]) for i in range(len(_WORDS) - 5)]
    lines += ["numbers 0123456789 and letters abcdefghijklmnopqrstuvwxyz", "<unk> marks an unknown piece"]
    return lines


def sentencepiece_model(vocab_size: int = 256) -> bytes:
    """A unigram sentencepiece model with SigLIP's special ids (0 pad, 1 eos, 2 unk, no bos)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return model.getvalue()


def build_model(seed: int = 0) -> tuple[SiglipModel, SiglipTokenizer, SiglipImageProcessorPil]:
    """A random-weight tiny ``SiglipModel``, its tokenizer and its image processor (deterministic for a seed)."""
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file = Path(scratch) / "spiece.model"
        vocab_file.write_bytes(sentencepiece_model())
        with quiet_transformers():
            tokenizer = SiglipTokenizer(
                vocab_file=str(vocab_file), model_input_names=["input_ids"], model_max_length=MAX_LENGTH
            )
    text_config = dict(
        TINY["text_config"],
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    config = SiglipConfig(text_config=text_config, vision_config=dict(TINY["vision_config"]))
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    size = config.vision_config.image_size
    processor = SiglipImageProcessorPil(
        size={"height": size, "width": size}, resample=3, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    return model, tokenizer, processor


def gemma_style_tokenizer(vocab_size: int = 300) -> Siglip2Tokenizer:
    """A byte-fallback BPE learnt from the built-in corpus, with the Gemma special ids SigLIP 2 uses
    (0 ``<pad>``, 1 ``<eos>``, 2 ``<bos>``, 3 ``<unk>``, 4 ``<mask>``), in ``Siglip2Tokenizer`` (which
    lower-cases). Padded to 64 tokens on the tokenizer's own side."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.pre_tokenizer = pre_tokenizers.Metaspace()
    learner.train_from_iterator(
        [line.lower() for line in _corpus()],
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False),
    )
    learnt = json.loads(learner.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learnt["merges"]]
    with quiet_transformers():
        return Siglip2Tokenizer(vocab=learnt["vocab"], merges=merges, model_max_length=MAX_LENGTH)


def build_siglip2_model(seed: int = 0):
    """A random-weight tiny SigLIP 2 NaFlex ``Siglip2Model``, its tokenizer and its image processor. The
    patching is the hub checkpoints' (patches of 16, a 16 x 16 grid of position embeddings, at most 256
    patches per image): ``Siglip2Processor`` imposes those two numbers whatever its image processor says."""
    from transformers import Siglip2Config, Siglip2ImageProcessorPil, Siglip2Model

    tokenizer = gemma_style_tokenizer()
    text_config = dict(
        TINY["text_config"],
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    vision_config = dict(TINY["vision_config"], num_patches=256, patch_size=16)
    vision_config.pop("image_size")
    config = Siglip2Config(text_config=text_config, vision_config=vision_config)
    torch.manual_seed(seed)
    model = Siglip2Model(config).eval()
    processor = Siglip2ImageProcessorPil(patch_size=16, max_num_patches=256)
    return model, tokenizer, processor


def save_random_model(target: str | Path, seed: int = 0, *, naflex: bool = False) -> Path:
    """Write a tiny random SigLIP (or, with ``naflex``, SigLIP 2 NaFlex) to ``target`` in the hub's
    layout; returns the directory."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    model, tokenizer, processor = build_siglip2_model(seed) if naflex else build_model(seed)
    with quiet_transformers():
        model.save_pretrained(str(target))
        tokenizer.save_pretrained(str(target))
        processor.save_pretrained(str(target))
    return target
