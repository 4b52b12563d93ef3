"""Checkpoints swreg must refuse with one clear line, never unpickling or running their code."""

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workers.science.checkpoint import open_checkpoint
from workers.science.errors import CheckpointRefused, UnsupportedArchitecture
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse


class _Tripwire:
    """Unpickling this creates a file: proof that something unpickled the checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def planted_copy(planted_models, tmp_path):
    source = planted_models("llama").path
    target = tmp_path / "model"
    shutil.copytree(source, target)
    return target


def test_directory_without_config(tmp_path):
    with pytest.raises(CheckpointRefused, match="no config.json"):
        open_checkpoint(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointRefused, match="not a directory"):
        open_checkpoint(tmp_path / "nope")


def test_pickle_only_checkpoint_is_refused_without_unpickling(planted_copy, tmp_path):
    marker = tmp_path / "unpickled"
    (planted_copy / "model.safetensors").unlink()
    (planted_copy / "pytorch_model.bin").write_bytes(pickle.dumps(_Tripwire(marker)))
    with pytest.raises(CheckpointRefused, match="pickle-only"):
        analyse(planted_copy, AnalysisOptions(validate=False))
    assert not marker.exists()


def test_remote_code_architecture_is_refused(planted_copy, tmp_path):
    config = json.loads((planted_copy / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (planted_copy / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "ran"
    (planted_copy / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(CheckpointRefused, match="remote code"):
        analyse(planted_copy, AnalysisOptions(validate=False))
    assert not marker.exists()


def test_a_model_without_a_feed_forward_block_is_refused_not_guessed(planted_copy):
    config = json.loads((planted_copy / "config.json").read_text())
    config["model_type"] = "mamba"
    (planted_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitecture, match="'mamba' has no feed-forward block"):
        open_checkpoint(planted_copy)


def test_an_encoder_is_refused_as_not_decoder_only(planted_copy):
    config = json.loads((planted_copy / "config.json").read_text())
    config["model_type"] = "bert"
    (planted_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitecture, match="'bert' is not decoder-only"):
        open_checkpoint(planted_copy)


def test_an_unknown_model_type_is_refused(planted_copy):
    config = json.loads((planted_copy / "config.json").read_text())
    config["model_type"] = "no_such_model"
    (planted_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointRefused, match="does not describe a model transformers knows"):
        open_checkpoint(planted_copy)


def test_truncated_safetensors_is_refused(planted_copy):
    weights = planted_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointRefused, match="corrupt safetensors"):
        open_checkpoint(planted_copy)


def test_garbage_header_is_refused(planted_copy):
    (planted_copy / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointRefused, match="corrupt safetensors"):
        open_checkpoint(planted_copy)


def test_shard_index_naming_a_missing_shard_is_refused(planted_copy):
    (planted_copy / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {"x": "model-00002-of-00002.safetensors"}})
    )
    with pytest.raises(CheckpointRefused, match="missing files"):
        open_checkpoint(planted_copy)


def test_cli_reports_a_refusal_as_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "registry.cli", "detect", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "config.json" in lines[0]


def test_weights_that_do_not_match_the_config_are_refused(planted_copy):
    config = json.loads((planted_copy / "config.json").read_text())
    config["intermediate_size"] = config["intermediate_size"] * 2
    (planted_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointRefused, match="has shape"):
        analyse(planted_copy, AnalysisOptions(validate=False))
