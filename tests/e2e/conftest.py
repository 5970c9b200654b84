"""One real stack (our service + weaviate-server) for all e2e tests, stopped as soon as they are done
so that later tests do not share the machine with it, and a second service instance on a different
random model for per-collection ``inferenceUrl`` tests.

A failing e2e test gets the tails of every process log appended to its report.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plugin_api.binary import find_weaviate_server
from plugin_api.errors import WeaviateBinaryNotFound

_started_stacks: list = []  # read by the failure hook below


def _running(local):
    """Start a LocalStack for a fixture, known to the failure hook while it runs."""
    local.start()
    _started_stacks.append(local)
    yield local
    local.stop()
    _started_stacks.remove(local)


@pytest.fixture(scope="session")
def weaviate_binary() -> Path:
    try:
        return find_weaviate_server()
    except WeaviateBinaryNotFound as exc:
        pytest.skip(f"weaviate-server is not built ({exc})")


@pytest.fixture(scope="package")
def stack(weaviate_binary, tiny_model, tmp_path_factory):
    from plugin_api.processes import free_ports
    from plugin_api.stack import LocalStack

    # The same service also backs Weaviate's text-only and image-only modules (its /vectors protocols).
    port = free_ports(1)[0]
    service = f"http://127.0.0.1:{port}"
    modules = {
        "ENABLE_MODULES": "multi2vec-clip,text2vec-transformers,img2vec-neural",
        "TRANSFORMERS_INFERENCE_API": service,
        "IMAGE_INFERENCE_API": service,
    }
    local = LocalStack(
        tiny_model,
        workdir=tmp_path_factory.mktemp("stack"),
        weaviate_binary=weaviate_binary,
        service_port=port,
        service_args=["--log-level", "warning"],
        weaviate_env=modules,
    )
    yield from _running(local)


@pytest.fixture(scope="module")
def restartable_stack(weaviate_binary, tiny_model, tmp_path_factory):
    """A stack of the test module's own, for tests that kill and restart its service: the shared one
    stays untouched whatever they leave behind."""
    from plugin_api.stack import LocalStack

    local = LocalStack(
        tiny_model,
        workdir=tmp_path_factory.mktemp("restartable-stack"),
        weaviate_binary=weaviate_binary,
        service_args=["--log-level", "warning"],
    )
    yield from _running(local)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> Path:
    """Same tiny architecture as ``tiny_model`` but another seed: different vectors for the same input."""
    from clip_training.random_models.clip import save_random_model

    return save_random_model(tmp_path_factory.mktemp("models") / "tiny-seed1", "tiny", "huggingface", seed=1)


@pytest.fixture(scope="package")
def second_service(stack, other_model):
    return stack.add_service(other_model)


@pytest.fixture(scope="package")
def client(stack):
    with stack.connect() as weaviate_client:
        yield weaviate_client


@pytest.fixture
def collection_name(request, client) -> str:
    """A collection name unique to the test; the collection is deleted afterwards."""
    name = "T_" + re.sub(r"[^A-Za-z0-9]", "_", request.node.name)[:60]
    if client.collections.exists(name):
        client.collections.delete(name)
    yield name
    if client.collections.exists(name):
        client.collections.delete(name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and {"stack", "restartable_stack"} & set(getattr(item, "fixturenames", ())):
        for local in _started_stacks:
            report.sections.append(("stack logs", local.log_tails(lines=30)))
