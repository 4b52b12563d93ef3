"""How coordinates are found and proven: the contract with the registry (`contract`), the
science (`science`), where checkpoints come from (`sources`), the worker loop (`worker`), the
science's commands (`commands`) and the models tests and benchmarks run on (`fixtures`)."""
