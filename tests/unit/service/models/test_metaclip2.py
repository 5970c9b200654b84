"""MetaCLIP 2 (facebook/metaclip-2-worldwide-*) as the reference image serves it: its download.py takes
the OpenAI-CLIP path for ``facebook/metaclip`` names, so the checkpoint (``model_type: metaclip_2``, an
XLM-R tokenizer) is loaded with ``CLIPModel`` under the reference's transformers 4.57.3 and saved as a CLIP
into models/openai_clip + models/openai_clip_processor. Those folders are served here; the vectors are
compared with the reference's own code path, run apart (``tests/reference_metaclip2.py``), on a tiny
random MetaCLIP 2 of the real architecture.

The reference's text vector is pooled where its CLIP code pools a model whose end token id is 2 (the
legacy ``argmax`` of the token ids, which for XLM-R's vocabulary is not the end token): the same code
here, so the same vectors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPProcessor, MetaClip2Config, MetaClip2Model, XLMRobertaTokenizer

from tests.helpers import build_arguments, download_script
from tests.isolated_envs import run_apart
from tests.reference import assert_parity
from vectorizer_module.models.loading import detect, load_towers
from vectorizer_module.models.reference import meta, normalization

TEXTS = ["a photo of the cat", "two small red dogs on a tree", "a"]
WORDS = "a photo of the cat dog red blue green square circle house tree two small large on in with".split()


def xlmr_tokenizer(scratch: Path) -> XLMRobertaTokenizer:
    """A small XLM-R-style tokenizer (fairseq ids: <s> 0, <pad> 1, </s> 2, <unk> 3) from a sentencepiece
    model trained here on a few words."""
    rng = np.random.default_rng(0)
    corpus = scratch / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS, 8)) for _ in range(500)))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(scratch / "spm"), vocab_size=60, model_type="bpe",
        bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1, minloglevel=2,
    )  # fmt: skip
    pieces = spm.SentencePieceProcessor(model_file=str(scratch / "spm.model"))
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(pieces.id_to_piece(i), pieces.get_score(i)) for i in range(1, pieces.get_piece_size())]
    return XLMRobertaTokenizer(vocab=[*vocab, ("<mask>", 0.0)])


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A random MetaCLIP 2 in the hub's layout (config, weights, XLM-R tokenizer, CLIP processor)."""
    scratch = tmp_path_factory.mktemp("metaclip2")
    tokenizer = xlmr_tokenizer(scratch)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, hidden_act="gelu")
    config = MetaClip2Config(
        text_config=dict(
            text,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(text, image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    target = scratch / "facebook--metaclip-2-tiny-random"
    MetaClip2Model(config).eval().save_pretrained(target)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target)
    assert json.loads((target / "config.json").read_text())["model_type"] == "metaclip_2"
    return target


@pytest.fixture(scope="module")
def reference(repo, tmp_path_factory):
    """The reference's models/ folder and its vectors, made by its code under transformers 4.57.3."""
    scratch = tmp_path_factory.mktemp("reference")
    spec = {"repo": str(repo), "models": str(scratch / "models"), "texts": TEXTS, "image_seed": 0}
    spec["out"] = str(scratch / "vectors.json")
    run_apart("reference_metaclip2.py", spec, scratch, reference=True)
    vectors = json.loads(Path(spec["out"]).read_text())
    assert vectors["transformers"] == "4.57.3"
    return Path(spec["models"]), vectors


def test_the_references_metaclip2_folders_are_served_as_a_clip(reference):
    models, _ = reference
    source = detect(models)
    assert (source.layout, source.family) == ("reference-image", "clip")
    assert (source.text_weights.name, source.tokenizer.name) == ("openai_clip", "openai_clip_processor")
    assert normalization(source) == {"text": True, "image": True}  # its OpenAI-CLIP path normalises
    assert meta(source)["model_type"] == "clip"  # CLIPConfig.to_dict() of the saved CLIP, as its meta.py


def test_texts_and_images_get_the_references_vectors(reference):
    models, vectors = reference
    towers = load_towers(detect(models))
    ours = towers.query.embed(TEXTS).numpy()
    assert_parity(ours / np.linalg.norm(ours, axis=1, keepdims=True), vectors["text"])
    pixels = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    image = towers.items.embed([Image.fromarray(pixels)]).numpy()
    # the reference asks for the fast image processor (use_fast=True: torchvision's resize), the service
    # follows the PIL one: on this image, pixels up to 0.015 apart on 0.4 % of the values, vectors ~1e-4
    assert_parity(image / np.linalg.norm(image, axis=1, keepdims=True), vectors["image"], max_abs=1e-3)


def _described(config: dict) -> dict:
    """A /meta body without what says where and by which transformers it was saved (4.57.3 also writes
    each part's dtype)."""
    drop = ("transformers_version", "dtype", "_name_or_path")
    return {k: _described(v) if isinstance(v, dict) else v for k, v in config.items() if k not in drop}


def test_our_images_build_of_a_metaclip2_repository_serves_the_references_vectors(
    repo, reference, tmp_path, monkeypatch
):
    """CLIP_MODEL_NAME=facebook/metaclip-2-... in our image: the files of the repository chosen as for any
    openai_clip build (metaclip_2 taken there), the config saved as the CLIP the reference saves; served,
    it gives the vectors and /meta of the reference's own folders."""
    module = download_script()
    names = sorted(p.name for p in repo.iterdir())

    def download(name, target, config_types=module.SERVED_CONFIG_TYPES):  # the hub stands in for repo
        files = module.choose_files(name, names, lambda f: json.loads((repo / f).read_text()), config_types)
        Path(target).mkdir(parents=True)
        for file in files:
            shutil.copy(repo / file, Path(target) / file)
        return files

    monkeypatch.setattr(module, "download", download)
    build_arguments(monkeypatch, CLIP_MODEL_NAME="facebook/metaclip-2-worldwide-s16")
    ours = tmp_path / "models"
    module.main(str(ours))
    theirs, vectors = reference
    source = detect(ours)
    assert (source.layout, source.family, source.tokenizer.name) == ("reference-image", "clip", "openai_clip_processor")
    assert _described(meta(source)) == _described(meta(detect(theirs)))
    towers, reference_towers = load_towers(source), load_towers(detect(theirs))
    assert np.array_equal(towers.query.embed(TEXTS).numpy(), reference_towers.query.embed(TEXTS).numpy())
    image = [Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8))]
    assert np.array_equal(towers.items.embed(image).numpy(), reference_towers.items.embed(image).numpy())
    texts = towers.query.embed(TEXTS).numpy()
    assert_parity(texts / np.linalg.norm(texts, axis=1, keepdims=True), vectors["text"])
    with pytest.raises(module.ModelRepoError, match="metaclip_2"):  # a MetaCLIP 2 is taken there only
        module.choose_files("facebook/metaclip-2-worldwide-s16", names, lambda f: json.loads((repo / f).read_text()))
