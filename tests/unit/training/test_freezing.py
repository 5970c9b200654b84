"""Freezing by parameter name and by the layers each family names (``clip_training/freezing.py``)."""

import pytest

from clip_training.freezing import freeze, freeze_first_layers, trainable_parameter_names, unfreeze
from vectorizer_module.models.loading import detect, load_towers


@pytest.fixture()
def towers(tiny_model):
    return load_towers(detect(tiny_model))


def test_freeze_and_unfreeze_by_name(towers):
    text = towers.query
    total = len(list(text.parameters()))
    frozen = freeze(text, "model.text_model.embeddings")
    assert frozen and all(name.startswith("model.text_model.embeddings.") for name in frozen)
    assert len(trainable_parameter_names(text)) == total - len(frozen)
    freeze(text)
    assert trainable_parameter_names(text) == []
    unfreeze(text, "*.layers.1.*")
    assert trainable_parameter_names(text) and all(".layers.1." in n for n in trainable_parameter_names(text))
    with pytest.raises(ValueError, match="no parameter of the text tower"):
        freeze(text, "no.such.layer")


def test_freeze_first_layers_leaves_later_layers_trainable(towers):
    vision = towers.items
    freeze_first_layers(vision, 1)
    trainable = trainable_parameter_names(vision)
    assert not any(".layers.0." in n or "embeddings" in n for n in trainable)
    assert any(".layers.1." in n for n in trainable)
    with pytest.raises(ValueError, match="has 2 layers"):
        freeze_first_layers(vision, 3)


def test_frozen_parameters_get_no_gradient(towers):
    text = towers.query
    freeze_first_layers(text, 2)
    out = text(*text.example_inputs(2)).sum()
    out.backward()
    for name, parameter in text.named_parameters():
        if ".layers.0." in name:
            assert parameter.grad is None
    assert text.model.text_projection.weight.grad is not None
