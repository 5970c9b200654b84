import json
import shutil

import pytest

from clip_training.random_models.clip import write_layout
from vectorizer_module.errors import ModelLayoutError
from vectorizer_module.models.loading import detect


@pytest.fixture(scope="module")
def layouts(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return {
        name: write_layout(tiny_model, root / name, name)
        for name in (
            "hub",
            "sentence-transformers",
            "sentence-transformers-legacy",
            "reference-image",
            "reference-image-st",
        )
    }


def test_each_layout_is_recognised_from_its_files(tiny_model, layouts):
    assert detect(tiny_model).layout == "huggingface"
    assert detect(layouts["hub"]).layout == "huggingface"
    legacy = detect(layouts["sentence-transformers-legacy"])
    assert legacy.layout == "sentence-transformers" and legacy.text_weights.name == "0_CLIPModel"
    image = detect(layouts["reference-image"])
    assert image.vision_weights.name == "openai_clip" and image.image_processor.name == "openai_clip_processor"
    # --model may name the image's models/ folder or the folder above it
    assert detect(layouts["reference-image-st"] / "models") == detect(layouts["reference-image-st"])
    st_pair = detect(layouts["reference-image-st"])
    assert st_pair.text_weights.parent.name == "text" and st_pair.vision_weights.parent.name == "clip"


def test_missing_directory_and_file_are_refused(tmp_path):
    with pytest.raises(ModelLayoutError, match="does not exist.*Expected one of"):
        detect(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelLayoutError, match="is a file, not a directory"):
        detect(tmp_path / "file")


def test_a_model_of_another_type_is_named(tiny_model, tmp_path):
    target = tmp_path / "bert"
    shutil.copytree(tiny_model, target)
    (target / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLayoutError, match="type 'bert', not 'clip'"):
        detect(target)


def test_missing_tokenizer_or_processor_is_named(tiny_model, tmp_path):
    target = tmp_path / "partial"
    shutil.copytree(tiny_model, target)
    (target / "tokenizer.json").unlink()
    (target / "processor_config.json").unlink()
    with pytest.raises(ModelLayoutError) as caught:
        detect(target)
    assert "tokenizer files" in str(caught.value) and "image processor file" in str(caught.value)


def test_weights_missing(tiny_model, tmp_path):
    target = tmp_path / "noweights"
    shutil.copytree(tiny_model, target)
    (target / "model.safetensors").unlink()
    with pytest.raises(ModelLayoutError, match="no weights"):
        detect(target)


def test_unsupported_reference_image_families_are_named(tmp_path):
    (tmp_path / "models" / "openclip").mkdir(parents=True)  # supported, but this one is empty
    with pytest.raises(ModelLayoutError, match="OpenCLIP folder .* has no config.json naming model_name"):
        detect(tmp_path)
    (tmp_path / "colpali" / "models" / "colpali_engine_model").mkdir(parents=True)  # supported, but without its name
    with pytest.raises(ModelLayoutError, match="colpali_engine_model needs .*model_name"):
        detect(tmp_path / "colpali")


def test_a_text_only_sentence_transformers_model_is_refused(tmp_path):
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [{"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}]
        )
    )
    (tmp_path / "0_Transformer").mkdir()
    (tmp_path / "0_Transformer" / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
    with pytest.raises(ModelLayoutError, match="none of its modules is a CLIP model.*'xlm-roberta'"):
        detect(tmp_path)


def test_reference_pair_with_a_text_model_that_is_neither_clip_nor_a_text_encoder_says_so(layouts, tmp_path):
    target = tmp_path / "broken-text"
    shutil.copytree(layouts["reference-image-st"], target)
    text = target / "models" / "text" / "0_CLIPModel" / "config.json"
    text.write_text(json.dumps({"model_type": "distilbert"}))  # listed as its only module: no pooling
    with pytest.raises(ModelLayoutError, match="neither a CLIP model nor a sentence-transformers text model"):
        detect(target)


def test_an_openclip_config_without_its_towers_is_refused(tmp_path):
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 512}}))
    (tmp_path / "open_clip_pytorch_model.bin").write_bytes(b"\0" * 16)
    with pytest.raises(
        ModelLayoutError, match="open_clip_config.json's model_cfg is missing or lacks embed_dim, vision_cfg"
    ):
        detect(tmp_path)


def test_a_list_of_model_directories_serves_the_first_that_holds_anything(tmp_path, tiny_model):
    from vectorizer_module.models.loading import choose_model_dir

    empty, missing, stray = tmp_path / "empty", tmp_path / "missing", tmp_path / "stray"
    (empty / "lost+found").mkdir(parents=True)  # a fresh volume
    (empty / ".keep").write_text("")
    stray.mkdir()
    (stray / "notes.txt").write_text("not a model")
    folder, skipped = choose_model_dir(f"{missing}:{empty}:{tiny_model}:{stray}")
    assert folder == tiny_model and skipped == [f"{missing} (missing)", f"{empty} (empty)"]
    # a directory with files but no model is chosen, and its own error says so (no silent fallback)
    folder, _ = choose_model_dir(f"{stray}:{tiny_model}")
    assert folder == stray
    with pytest.raises(ModelLayoutError):
        detect(folder)
    with pytest.raises(ModelLayoutError, match="none of the model directories"):
        choose_model_dir(f"{missing}:{empty}")
    assert choose_model_dir(str(missing)) == (missing, [f"{missing} (missing)"])  # detect() says why


def test_model_files_the_service_user_cannot_read_are_named_with_their_mode_and_owner(tmp_path, tiny_model):
    import os

    from vectorizer_module.models.loading import unreadable_files

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    owner = os.stat(model).st_uid
    stranger = owner + 10001  # neither the owner nor in the group
    weights = next(model.glob("*.safetensors"))
    weights.chmod(0o644)
    assert unreadable_files(model, uid=stranger, gids=[]) == []
    weights.chmod(0o600)  # as safetensors writes it (so `make-random-model` leaves it), or a careful umask
    assert unreadable_files(model, uid=stranger, gids=[]) == [weights]
    assert unreadable_files(model, uid=owner, gids=[]) == []
    weights.chmod(0o640)
    assert unreadable_files(model, uid=stranger, gids=[os.stat(weights).st_gid]) == []
    model.chmod(0o700)  # a folder that cannot be entered hides everything in it
    assert model not in unreadable_files(model, uid=stranger, gids=[])  # the root itself is not listed
    (model / "sub").mkdir()
    (model / "sub").chmod(0o700)
    assert model / "sub" in unreadable_files(model, uid=stranger, gids=[])
    assert unreadable_files(model, uid=0) == []  # root reads everything
