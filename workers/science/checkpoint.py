"""Checkpoints: which files make one, and opening a local checkpoint directory safely.

The file rules (`weight_file_names`, `refuse_unusable_listing`, `read_shard_index`) work on a
list of file names, so that a Hub repository's listing is judged by the same rules as a local
directory, before anything is downloaded. Nothing here unpickles a file or imports code shipped
with a model: a pickle-only checkpoint and a config that asks for remote code are refused with a
reason.
"""

import hashlib
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from safetensors import SafetensorError, safe_open

from workers.science import limits, preflight
from workers.science.errors import CheckpointRefused
from workers.science.feed_forward import FeedForward, check_executable, discover

CONFIG_FILE = "config.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SUFFIX = ".safetensors"
# Weights that can only be read by unpickling, which runs arbitrary code: never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
# The one answer to a shard index that names anything but a file of the checkpoint's own folder
# (an absolute path, `..`, a subfolder, a link out): the same words whatever lies outside, so
# that the answer tells nothing about the worker's file system, and nothing outside is opened.
OUTSIDE_THE_CHECKPOINT = "the shard index names a file outside the checkpoint folder"

# A safetensors header (the JSON before the tensors): tens of KB for a real shard; safetensors
# itself accepts 100 MB, which would cost a worker a gigabyte to parse.
MAX_SAFETENSORS_HEADER_BYTES = 16 * 1024**2

# The small files a worker reads besides the weights, by kind (each kind has its size cap).
CONFIG_NAMES = ("config.json", "generation_config.json")
TOKENIZER_PATTERNS = (
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.*",  # transformers reads a chat template with the tokenizer
    "*.model",  # sentencepiece
)


def metadata_kind(name: str) -> str | None:
    """ "config", "tokenizer" or "shard index" for a top-level file a worker parses, else None."""
    if "/" in name:
        return None
    if name in CONFIG_NAMES:
        return "config"
    if name == SAFETENSORS_INDEX:
        return "shard index"
    if any(fnmatch(name, p) for p in TOKENIZER_PATTERNS):
        return "tokenizer"
    return None


def metadata_cap(kind: str) -> int:
    current = limits.current()
    return {
        "config": current.config_bytes,
        "tokenizer": current.tokenizer_bytes,
        "shard index": current.shard_index_bytes,
    }[kind]


def refuse_oversized_metadata(sizes: Iterable[tuple[str, int]], what: str) -> None:
    """Refuse a checkpoint one of whose parsed files is over its cap (from sizes alone: the Hub
    listing, or the file system), before anything is read."""
    for name, size in sizes:
        kind = metadata_kind(name)
        if kind is not None and size > metadata_cap(kind):
            raise CheckpointRefused(
                limits.size_refusal(what, f"{name} ({kind})", size, metadata_cap(kind))
            )


def check_local_metadata(path: Path) -> None:
    """The size caps of a local folder's parsed files, from their sizes."""
    refuse_oversized_metadata(
        ((p.name, p.stat().st_size) for p in path.iterdir() if p.is_file()), str(path)
    )


@dataclass
class WeightFile:
    name: str
    size: int
    sha256: str | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


@dataclass
class Checkpoint:
    path: Path
    config: dict
    feed_forward: FeedForward  # where each layer's feed-forward output projection is
    weight_files: list[WeightFile]
    tensor_file: dict[str, str] = field(repr=False)  # tensor name -> file name
    tensor_dtype: dict[str, str] = field(repr=False)
    tensor_shape: dict[str, list[int]] = field(repr=False)
    # tensor name -> (absolute start, end) of its bytes in its file
    tensor_span: dict[str, tuple[int, int]] = field(repr=False, default_factory=dict)

    @property
    def model_type(self) -> str:
        return self.feed_forward.model_type

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.weight_files)

    def text_config(self) -> dict:
        return self.config.get("text_config") or self.config

    def dtype_name(self, tensor: str) -> str:
        return SAFETENSORS_DTYPES.get(self.tensor_dtype[tensor], self.tensor_dtype[tensor].lower())


def _read_config(path: Path) -> dict:
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointRefused(f"{path}: no {CONFIG_FILE}, not a Hugging Face model directory")
    config = read_small_json(config_path, "config", "unreadable config")
    if not isinstance(config, dict):
        raise CheckpointRefused(f"{config_path}: the config is not a JSON object")
    if config.get("auto_map"):
        raise CheckpointRefused(
            f"{path}: the model needs remote code (config.json has auto_map); swreg never runs "
            "code shipped with a model"
        )
    return config


# --- which files make a checkpoint (rules over file names) ------------------------------------


def read_small_json(file: Path, kind: str, unreadable: str):
    """A JSON file a checkpoint ships (config, shard index), refused over its size cap before a
    byte is read, and refused in one line when it is not JSON or nested too deep to parse."""
    cap = metadata_cap(kind)
    try:
        size = file.stat().st_size
        if size > cap:
            raise CheckpointRefused(limits.size_refusal(str(file), kind, size, cap))
        with file.open("rb") as handle:
            return json.loads(handle.read(cap + 1))
    except RecursionError:
        raise CheckpointRefused(f"{file}: {unreadable} (nested too deep)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointRefused(f"{file}: {unreadable} ({first})") from None


def _plain_file_name(name: object) -> bool:
    """A file directly in the checkpoint's folder, named without any path."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
    )


def read_shard_index(index_file: Path) -> list[str]:
    """The weight files a safetensors shard index names: plain file names of the checkpoint's
    own folder, or the checkpoint is refused (OUTSIDE_THE_CHECKPOINT, one message whatever the
    name points at; nothing is looked up)."""
    document = read_small_json(index_file, "shard index", "unreadable shard index")
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointRefused(f"{index_file}: unreadable shard index (no weight_map object)")
    names = set(weight_map.values())
    if not all(_plain_file_name(n) for n in names):
        raise CheckpointRefused(f"{index_file.parent}: {OUTSIDE_THE_CHECKPOINT}")
    return sorted(names)


def confinement_root(path: Path) -> Path:
    """Where a checkpoint's files may lie once every link is followed: the folder itself, or
    for a Hub cache snapshot (snapshots/<sha>, whose files link to ../../blobs) the cached
    repository's folder."""
    path = Path(os.path.realpath(path))
    if path.parent.name == "snapshots":
        return path.parent.parent
    return path


def refuse_outside(path: Path, names: Iterable[str]) -> None:
    """Refuse a checkpoint any of whose named files resolves outside confinement_root (by name
    only: os.path.realpath does not ask whether the target exists, so the answer is the same
    whatever lies outside)."""
    root = confinement_root(path)
    for name in names:
        if not Path(os.path.realpath(path / name)).is_relative_to(root):
            raise CheckpointRefused(f"{path}: {OUTSIDE_THE_CHECKPOINT}")


def weight_file_names(names: Iterable[str], shards: list[str] | None) -> list[str]:
    """The weight files detection reads among `names` (paths relative to the checkpoint): the
    shards the index names when there is one (a repository may also carry a consolidated copy
    of the same weights, e.g. Mistral's consolidated.safetensors next to its shards), else
    every top-level safetensors file."""
    top_level = [n for n in names if "/" not in n and n.endswith(SAFETENSORS_SUFFIX)]
    return sorted(n for n in top_level if shards is None or n in shards)


def refuse_unusable_listing(names: Iterable[str], what: str) -> None:
    """Refuse, from its file names alone, a checkpoint swreg must not or cannot read."""
    names = list(names)
    if not any(n.endswith(SAFETENSORS_SUFFIX) for n in names):
        if any(n.endswith(PICKLE_SUFFIXES) for n in names):
            raise CheckpointRefused(
                f"{what}: pickle-only checkpoint (never unpickled): no .safetensors weight files"
            )
        raise CheckpointRefused(f"{what}: no .safetensors weight files")
    if CONFIG_FILE not in names:
        raise CheckpointRefused(f"{what}: no {CONFIG_FILE}")


def local_weight_names(path: Path) -> list[str]:
    """The weight files of a local checkpoint directory by the rule above (not yet checked to
    exist: a shard index may name missing files)."""
    index_path = path / SAFETENSORS_INDEX
    if index_path.is_file():
        return read_shard_index(index_path)
    # A link counts whether or not its target exists (refuse_outside judges it by name).
    return weight_file_names(
        [p.name for p in path.iterdir() if p.is_file() or p.is_symlink()], None
    )


def checked_weight_names(path: Path) -> list[str]:
    """The weight files of a local checkpoint directory, every one present; refuses a
    directory that is not a usable checkpoint."""
    names = local_weight_names(path)
    refuse_outside(path, names)
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise CheckpointRefused(f"{path}: shard index names missing files: {', '.join(missing)}")
    refuse_unusable_listing([p.name for p in path.iterdir() if p.is_file()], str(path))
    if not names:
        raise CheckpointRefused(f"{path}: no top-level .safetensors weight files")
    return names


def _read_header(file: Path) -> dict[str, tuple[str, list[int], tuple[int, int]]]:
    """Tensor name -> (dtype, shape, byte span in the file) from a safetensors header.

    `safe_open` validates the header against the file size, so a truncated or garbled file is
    refused here, before any weights are used. It does not expose where each tensor's bytes lie,
    which the streamed reader needs, so the span comes from the header itself (8-byte
    little-endian length, then JSON with `data_offsets` relative to the end of the header).
    """
    try:
        # framework="numpy": the same validation without torch's private mapping of the whole
        # file, which would count toward an analysis's memory limit (RLIMIT_DATA).
        with safe_open(file, framework="numpy"):
            pass
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_SAFETENSORS_HEADER_BYTES:
                raise CheckpointRefused(
                    limits.size_refusal(
                        str(file), "its safetensors header", length, MAX_SAFETENSORS_HEADER_BYTES
                    )
                )
            header = json.loads(handle.read(length))
    except (SafetensorError, OSError, ValueError, struct.error) as exc:
        raise CheckpointRefused(f"{file}: corrupt safetensors file ({exc})") from None
    base = 8 + length
    return {
        name: (
            entry["dtype"],
            list(entry["shape"]),
            (base + entry["data_offsets"][0], base + entry["data_offsets"][1]),
        )
        for name, entry in header.items()
        if name != "__metadata__"
    }


def sha256_of(file: Path) -> str:
    # file_digest reads into one small reused buffer: no chunk-sized allocations.
    with file.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def open_checkpoint(path: Path | str) -> Checkpoint:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CheckpointRefused(f"{path}: not a directory")
    config = _read_config(path)
    check_local_metadata(path)
    # Check before building (workers/science/preflight.py): the config's own bounds, then its
    # agreement with the tensor headers, before transformers sees it; the down projections
    # once the model is described on the meta device.
    preflight.check_config(config, str(path))
    tensor_file: dict[str, str] = {}
    tensor_dtype: dict[str, str] = {}
    tensor_shape: dict[str, list[int]] = {}
    tensor_span: dict[str, tuple[int, int]] = {}
    weight_files = []
    for file in (path / name for name in checked_weight_names(path)):
        for name, (dtype, shape, span) in _read_header(file).items():
            tensor_file[name] = file.name
            tensor_dtype[name] = dtype
            tensor_shape[name] = shape
            tensor_span[name] = span
        weight_files.append(WeightFile(name=file.name, size=file.stat().st_size))
    preflight.check_against_tensors(config, tensor_shape, str(path))
    feed_forward = _feed_forward(path)
    preflight.check_sites(feed_forward, tensor_dtype, tensor_shape, str(path))
    return Checkpoint(
        path,
        config,
        feed_forward,
        weight_files,
        tensor_file,
        tensor_dtype,
        tensor_shape,
        tensor_span,
    )


def _feed_forward(path: Path) -> FeedForward:
    """The descriptor of the model config.json describes, found by structure (see
    `workers.science.feed_forward`); a model swreg cannot analyse is refused here."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (ValueError, TypeError, KeyError, AttributeError, OSError, StrictDataclassError) as exc:
        # A config class's own validator says the real reason in the error's cause.
        reason = exc.__cause__ if isinstance(exc, StrictDataclassError) and exc.__cause__ else exc
        first = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
        raise CheckpointRefused(
            f"{path}: config.json does not describe a model transformers knows ({first})"
        ) from None
    feed_forward = discover(config)
    check_executable(feed_forward)
    return feed_forward


LOCAL_REVISION_PREFIX = "sha256:"


def local_revision(weight_sha256: dict[str, str]) -> str:
    """The revision of a local directory: one sha256 over its weight files' names and sha256, in
    name order (so the same weights give the same revision wherever they were hashed)."""
    digest = hashlib.sha256()
    for name, file_sha256 in sorted(weight_sha256.items()):
        digest.update(f"{name}\0{file_sha256}\n".encode())
    return LOCAL_REVISION_PREFIX + digest.hexdigest()


def content_hash(checkpoint: Checkpoint) -> str:
    hashes = {f.name: f.sha256 for f in checkpoint.weight_files if f.sha256 is not None}
    assert len(hashes) == len(checkpoint.weight_files), "the checkpoint was opened without hashing"
    return local_revision(hashes)


def fill_sha256(checkpoint: Checkpoint, known: dict[str, str] | None = None) -> None:
    """Give every weight file its sha256, hashing only those not already known (Hub blobs)."""
    known = known or {}
    for file in checkpoint.weight_files:
        file.sha256 = known.get(file.name) or sha256_of(checkpoint.path / file.name)
