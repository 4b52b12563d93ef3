"""Fixtures for the workers' tests: planted tiny models (built once per session). The real
SmolLM2-135M-Instruct copy and its one detection run are in tests/conftest.py (the registry's
browser tests use them too)."""

import pytest

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
