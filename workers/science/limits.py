"""How much of a checkpoint's own description swreg reads before it trusts any of it.

A checkpoint is input from whoever published it: its config.json, tokenizer files and shard
index are capped by size (checked from the Hub listing or the file size, before anything is
read), and the model its config describes by parameter count (checked before anything is
built; workers/science/preflight.py). The defaults fit every real model swreg knows of; the
worker sets its own from the registry's settings (SWREG_MAX_CONFIG_BYTES, ...) with
`configure`.
"""

from dataclasses import dataclass, replace

MIB = 1024**2


@dataclass(frozen=True)
class Limits:
    # A real config.json is a few KB; a multimodal one some tens.
    config_bytes: int = 1 * MIB
    # The largest real tokenizer.json (Gemma 3's, 262k tokens) is about 33 MB.
    tokenizer_bytes: int = 64 * MIB
    # A shard index is a few KB to a few MB (DeepSeek-V3's, 91k tensors: 9 MB).
    shard_index_bytes: int = 16 * MIB
    # The largest model a worker builds, by the parameter count its config implies.
    parameters: int = 80 * 10**9


_current = Limits()


def current() -> Limits:
    return _current


def configure(**values: int) -> Limits:
    """Replace some limits for this process (and the analyses it starts); returns them."""
    global _current
    _current = replace(_current, **values)
    return _current


def size_refusal(what: str, kind: str, size: int, cap: int) -> str:
    """The one line that refuses a file over its cap."""
    return f"{what}: {kind} is {size:,} bytes, over the cap of {cap:,} bytes"
