"""Shared data for the registry tests: a detection report as `swreg detect --json` prints it."""

import copy

import pytest

from registry.database import transaction
from registry.index import service as index_service

SHA_A = "a" * 40
SHA_B = "0123456789abcdef0123456789abcdef01234567"
CONTENT = "sha256:" + "c" * 64

REPORT = {
    "model": {
        "path": "/models/smollm2",
        "model_type": "llama",
        "architecture": "LlamaForCausalLM",
        "dtype": "float32",
        "num_layers": 30,
        "d_model": 576,
        "d_ff": 1536,
        "weight_files": [{"name": "model.safetensors", "sha256": "d" * 64, "size": 538_000_000}],
    },
    "detector": {"name": "swreg", "version": "0.1.0", "device": "cpu", "torch": "2.13.0", "transformers": "5.23.0"},
    "prompts": ["Apple Inc. is a worldwide tech company."],
    "eval": {"tokens": 1024},
    "profile": [{"layer": 11, "max_x": 2996.0, "max_y": 24022.0}],
    "super_weights": [
        {
            "tensor": "model.layers.11.mlp.down_proj.weight",
            "index": [507, 1229],
            "layer": 11,
            "module": "mlp.down_proj",
            "row": 507,
            "col": 1229,
            "value": 5.876,
            "dtype": "float32",
            "state": "verified",
            "evidence": {"ppl_base": 20.19, "ppl_ablated": 378.6, "controls": {"random_100": 20.19}},
        },
        {
            "tensor": "model.layers.28.mlp.down_proj.weight",
            "index": [507, 678],
            "layer": 28,
            "module": "mlp.down_proj",
            "row": 507,
            "col": 678,
            "value": -0.4375,
            "dtype": "float32",
            "state": "rejected",
            "evidence": {"ppl_base": 20.19, "ppl_ablated": 20.19},
        },
    ],
    "timings": {"total_s": 41.2},
}


@pytest.fixture
def report() -> dict:
    return copy.deepcopy(REPORT)


@pytest.fixture
def published(db_sessions) -> None:
    """The shipped published index, loaded."""
    document = index_service.load_file(index_service.PUBLISHED_INDEX_PATH)
    with transaction(db_sessions) as session:
        index_service.import_document(session, document)
