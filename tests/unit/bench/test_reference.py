"""The bench's baseline (``bench/reference.py``): the reference server gets the model in the layout its own
download.py writes, and its packages are what its requirements.txt pins, beside this environment's torch."""

from bench import reference
from vectorizer_module.models.loading import detect


def test_the_model_is_given_to_the_reference_in_its_openai_clip_layout(tiny_model, tmp_path):
    models = reference.write_models(tiny_model, tmp_path)
    assert models == tmp_path / "models"
    weights = sorted(p.name for p in (models / "openai_clip").iterdir())
    assert weights == sorted(p.name for p in tiny_model.iterdir() if p.name in reference.MODEL_FILES)
    processor = {p.name for p in (models / "openai_clip_processor").iterdir()}
    assert processor & {"preprocessor_config.json", "processor_config.json"} and "tokenizer.json" in processor
    source = detect(models)  # what a migrating user's volume holds: served here as the reference image's
    assert (source.layout, source.text_weights.name, source.tokenizer.name) == (
        "reference-image",
        "openai_clip",
        "openai_clip_processor",
    )


def test_the_requirements_install_apart_except_torch_and_what_cannot_sit_beside_it(tmp_path):
    (tmp_path / "requirements.txt").write_text(
        "# pins\ntransformers[sentencepiece]==4.57.3\ntorch==2.6.0\ncolpali-engine==0.3.13\nopen_clip_torch==2.29.0\n"
    )
    names = [reference._name(r) for r in reference._requirements(tmp_path)]
    assert names == ["transformers", "torch", "colpali-engine", "open-clip-torch"]
    kept_here = [
        n for n in ("torch", "torchvision", "triton", "nvidia-cublas-cu12", "numpy") if reference.FROM_HERE.match(n)
    ]
    assert kept_here == ["torch", "triton", "nvidia-cublas-cu12"]  # torchvision goes apart, built for this torch
