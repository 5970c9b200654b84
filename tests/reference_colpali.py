"""Run in a subprocess with the reference image's packages (.reference-env: transformers 4.57.3,
colpali-engine 0.3.13, accelerate) on PYTHONPATH: what Weaviate's multi2vec-clip-inference 1.5.0 does with
``COLPALI_ENGINE_MODEL_NAME``, on a tiny random ModernVBERT bi-encoder built here (no hub is reachable).

The encoders' configs go into a Hugging Face cache under the names the model's config points at (the
reference image has them in its default cache, from the build); the model and its processor are saved
into ``models/colpali_engine_model`` and ``models/colpali_engine_processor`` as hub caches of ``repo``, as
its download.py's ``from_pretrained(..., cache_dir=...)`` leaves them, with the ``config.json`` and
``model_name`` it then writes; its clip.py then loads them and embeds texts and images (each list in one
processor call) and normalises.

    python reference_colpali.py SPEC.json   # {"target", "repo", "texts", "images": [paths], "out"}
"""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

TEXT_ENCODER = "jhu-clsp/ettin-encoder-150m"  # colpali-engine's defaults: a default config needs them too
VISION_ENCODER = "google/siglip2-base-patch16-512"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|begin_of_text|>", "<fake_token_around_image>", "<image>"]
SPECIALS += ["<end_of_utterance>", "<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]


def into_cache(cache: Path, repo: str, source: Path) -> None:
    folder = cache / ("models--" + repo.replace("/", "--"))
    revision = hashlib.sha1(repo.encode()).hexdigest()
    (folder / "snapshots" / revision).mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        shutil.copy(file, folder / "snapshots" / revision / file.name)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(revision)


def tokenizer():
    """One token per byte, the special tokens of ModernVBERT's processor, [CLS] ... [SEP] around a text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],
    )


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    target = Path(spec["target"])
    hub, models, staging = target / "hf-cache", target / "models", target / "staging"
    os.environ.update(HF_HUB_CACHE=str(hub), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

    import torch
    from colpali_engine.models import BiModernVBert, BiModernVBertProcessor
    from colpali_engine.models.modernvbert.configuration_modernvbert import ModernVBertConfig
    from PIL import Image
    from transformers import Idefics3ImageProcessor, ModernBertConfig, SiglipConfig

    tok = tokenizer()
    ids = tok.get_vocab()
    ModernBertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=2,
        global_attn_every_n_layers=2,
        local_attention=16,
        max_position_embeddings=512,
        pad_token_id=ids["[PAD]"],
        bos_token_id=ids["[CLS]"],
        eos_token_id=ids["[SEP]"],
        cls_token_id=ids["[CLS]"],
        sep_token_id=ids["[SEP]"],
    ).save_pretrained(staging / "text")
    into_cache(hub, TEXT_ENCODER, staging / "text")
    # 32-pixel tiles of 2-pixel patches, shuffled by 2: 64 embeddings a tile, the processor's fixed number
    vision = {"hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 2}
    SiglipConfig(
        text_config={
            "vocab_size": 64,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        vision_config={**vision, "image_size": 32, "patch_size": 2},
    ).save_pretrained(staging / "vision")
    into_cache(hub, VISION_ENCODER, staging / "vision")

    config = ModernVBertConfig(
        text_config={
            "text_model_name": TEXT_ENCODER,
            "hidden_size": 32,
            "num_hidden_layers": 3,
            "vocab_size": len(tok),
        },
        vision_config={"vision_model_name": VISION_ENCODER, "embed_dim": 24, "image_size": 32, "patch_size": 2},
        image_token_id=ids["<image>"],
        vocab_size=len(tok),
        pixel_shuffle_factor=2,
        pad_token_id=ids["[PAD]"],
        initializer_range=0.2,
        freeze_config={"freeze_text_layers": False},
    )
    torch.manual_seed(spec.get("seed", 0))
    BiModernVBert(config).eval().save_pretrained(staging / "model")
    images = Idefics3ImageProcessor(
        do_image_splitting=True,
        size={"longest_edge": 64},
        max_image_size={"longest_edge": 32},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    BiModernVBertProcessor(image_processor=images, tokenizer=tok, image_seq_len=64).save_pretrained(
        staging / "processor"
    )
    repo = spec["repo"]
    into_cache(models / "colpali_engine_model", repo, staging / "model")
    into_cache(models / "colpali_engine_processor", repo, staging / "processor")
    shutil.rmtree(staging)

    # download.py's own steps, then clip.py's ClipInferenceColPaliEngine
    processor = BiModernVBertProcessor.from_pretrained(repo, cache_dir=str(models / "colpali_engine_processor"))
    model = BiModernVBert.from_pretrained(
        repo, cache_dir=str(models / "colpali_engine_model"), trust_remote_code=True, dtype="auto", device_map="auto"
    )
    written = {
        "model_name": repo,
        "cache_dir": "./models/colpali_engine_model",
        "cache_dir_processor": "./models/colpali_engine_processor",
        "model_config": model.config.to_diff_dict(),
    }
    (models / "colpali_engine_model" / "config.json").write_text(json.dumps(written))
    (models / "model_name").write_text(repo)
    with torch.no_grad():
        texts = torch.nn.functional.normalize(model(**processor.process_texts(spec["texts"])), dim=-1)
        pictures = [Image.open(path) for path in spec["images"]]
        images = torch.nn.functional.normalize(model(**processor.process_images(pictures)), dim=-1)
    Path(spec["out"]).write_text(json.dumps({"texts": texts.tolist(), "images": images.tolist()}))


if __name__ == "__main__":
    main(sys.argv[1])
