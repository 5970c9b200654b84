"""Caption templates of the synthetic shapes set, by the attributes they name.

``CLASSIC`` are the templates of the held-out test split (unchanged since the first demo model, so that
split is the same from one model to the next). ``TRAINING`` (the train and validation splits) holds them
all and the phrasings people commonly type ("a photo of a ...", "an image of a ...", "a ... on a ...
background"). ``WILD`` (the wild split) was written before any model was trained on the new set and is
never trained or tuned on; none of its templates is a training template, and a few of its words
("illustration", "simple", "one", "that") are in no training caption, so the tokenizer splits them into
pieces the model never saw.
"""

from __future__ import annotations

Kind = tuple[str, ...]

CLASSIC: dict[Kind, tuple[str, ...]] = {
    ("colour", "shape"): (
        "a {colour} {shape}",
        "a picture of a {colour} {shape}",
        "{colour} {shape}",
        "a drawing of a {colour} {shape}",
        "a {colour} {shape} shape",
    ),
    ("size", "colour", "shape"): ("a {size} {colour} {shape}", "a picture of a {size} {colour} {shape}"),
    ("colour", "shape", "position"): ("a {colour} {shape} {position}", "{position}, a {colour} {shape}"),
    ("size", "colour", "shape", "position"): (
        "a {size} {colour} {shape} {position}",
        "a picture of a {size} {colour} {shape} {position}",
    ),
    ("colour", "shape", "background"): ("a {colour} {shape} on a {background} background",),
}

TRAINING: dict[Kind, tuple[str, ...]] = {
    ("colour", "shape"): CLASSIC[("colour", "shape")]
    + (
        "a photo of a {colour} {shape}",
        "an image of a {colour} {shape}",
        "a sketch of a {colour} {shape}",
        "a {colour} {shape} icon",
        "a {shape} in {colour}",
        "this is a {colour} {shape}",
        "a close-up of a {colour} {shape}",
    ),
    ("size", "colour", "shape"): CLASSIC[("size", "colour", "shape")]
    + ("a photo of a {size} {colour} {shape}", "{size} {colour} {shape}", "an image of a {size} {colour} {shape}"),
    ("colour", "shape", "position"): CLASSIC[("colour", "shape", "position")]
    + ("a photo of a {colour} {shape} {position}", "an image of a {colour} {shape} {position}"),
    ("size", "colour", "shape", "position"): CLASSIC[("size", "colour", "shape", "position")]
    + ("a photo of a {size} {colour} {shape} {position}",),
    ("colour", "shape", "background"): CLASSIC[("colour", "shape", "background")]
    + (
        "a photo of a {colour} {shape} on a {background} background",
        "an image of a {colour} {shape} on a {background} background",
        "a {colour} {shape} against a {background} background",
    ),
}

WILD: dict[Kind, tuple[str, ...]] = {
    ("colour", "shape"): (
        "the {colour} {shape}",
        "one {colour} {shape}",
        "a {colour} {shape} in the picture",
        "a {shape} that is {colour}",
        "an illustration of a {colour} {shape}",
        "a simple {colour} {shape}",
    ),
    ("size", "colour", "shape"): ("the {size} {colour} {shape}", "one {size} {colour} {shape}"),
    ("colour", "shape", "position"): ("the {colour} {shape} {position}", "one {colour} {shape} {position}"),
}
