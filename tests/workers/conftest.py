"""Fixtures for the workers' tests: planted tiny models (built once per session) and the real
SmolLM2-135M-Instruct copy (converted once into the user cache, reused across runs)."""

import pytest
import torch

from workers.fixtures.planted import build_planted_model


@pytest.fixture(scope="session")
def planted_models(tmp_path_factory):
    """model_type -> PlantedModel, built on first use."""
    built = {}

    def get(model_type: str):
        if model_type not in built:
            built[model_type] = build_planted_model(
                model_type, tmp_path_factory.mktemp(f"planted-{model_type}")
            )
        return built[model_type]

    return get


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: thread start-up and contention cost more than the arithmetic (measured 15x
    on a loaded 2-core machine). For modules that build and analyse planted models."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The context of the first-token fixtures: a quarter of swreg's 1,024-token window.
SHORT_CONTEXT = 256


@pytest.fixture(scope="session")
def first_token_models(tmp_path_factory):
    """model_type -> a planted model whose super weights sit in layer 0 with their super
    activation on the first token only, and whose context is SHORT_CONTEXT tokens; built on
    first use."""
    built = {}

    def get(model_type: str):
        if model_type not in built:
            built[model_type] = build_planted_model(
                model_type, tmp_path_factory.mktemp(f"first-token-{model_type}"),
                plant_layer=0, first_token=True, positions=SHORT_CONTEXT,
            )
        return built[model_type]

    return get


@pytest.fixture(scope="session")
def smollm2():
    from workers.fixtures.smollm2 import smollm2_dir

    return smollm2_dir()
