"""What crosses the pipe between a worker and its model process (``server/model_process.py``) is pickled:
every error the model side raises must arrive as the same error, so the front answers it alike."""

from __future__ import annotations

import pickle

import pytest

from vectorizer_module import errors
from vectorizer_module.answers import Answer

RAISED = [
    errors.BadInput("images[2] is not an image", param="input"),
    errors.TooLarge("texts[0] is over VECTORIZER_MAX_TEXT_CHARS", reason="text_too_long"),
    errors.ModelFailure("the image model failed on this input: RuntimeError: x"),
    errors.still_loading("the model is still loading in 1 of 2 workers"),
    errors.shutting_down(),
    errors.past_deadline(),
    errors.client_gone(),
    errors.at_capacity(512),
    errors.more_than_the_queue_holds(600, 512),
    errors.ServiceError("internal error in the model process: KeyError"),
]


@pytest.mark.parametrize("error", RAISED, ids=lambda e: f"{type(e).__name__}-{e.reason}")
def test_each_service_error_arrives_with_its_class_status_message_and_headers(error):
    arrived = pickle.loads(pickle.dumps(error))
    assert type(arrived) is type(error)
    assert (arrived.status, arrived.reason, arrived.message, arrived.headers, arrived.param) == (
        error.status,
        error.reason,
        error.message,
        error.headers,
        error.param,
    )
    assert str(arrived) == str(error)


def test_an_answer_arrives_whole():
    answer = Answer(b'{"textVectors":[[0.5]]}', {"texts": 1, "images": 0, "image_bytes": 0})
    assert pickle.loads(pickle.dumps(answer)) == answer
