"""Fixtures for the workers' tests: planted models with a short context and the super activation
on the first token, and a fake Hugging Face Hub served over HTTP. The planted tiny models, their
analyses and the real SmolLM2 copy are shared with other tests: they live in tests/conftest.py."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from workers.fixtures.planted import build_planted_model


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
                model_type,
                tmp_path_factory.mktemp(f"first-token-{model_type}"),
                plant_layer=0,
                first_token=True,
                positions=SHORT_CONTEXT,
            )
        return built[model_type]

    return get


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A fake Hugging Face Hub on 127.0.0.1 (tests/fake_hub.py) with an empty cache, online.

    huggingface_hub in this process points at it as `HF_ENDPOINT` would have made it (it reads
    HF_ENDPOINT into its constants at import, long done here), and subprocesses get HF_ENDPOINT
    itself. `fake_hub.cache` is the Hub cache directory."""
    with serving_fake_hub(tmp_path / "hf-cache", monkeypatch) as hub:
        yield hub


@contextmanager
def serving_fake_hub(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """The `fake_hub` fixture's Hub, for fixtures of a wider scope (their own MonkeyPatch)."""
    from huggingface_hub import constants

    from tests.fake_hub import FakeHub

    cache.mkdir()
    with FakeHub() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(
            constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            hub.url + "/{repo_id}/resolve/{revision}/{filename}",
        )
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
        for name, value in {
            "HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_CACHE": str(cache),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }.items():
            monkeypatch.setenv(name, value)
        hub.cache = cache
        yield hub
