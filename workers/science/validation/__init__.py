"""Proving or rejecting a candidate by ablation: the variants to run (`variants`), how a variant
changes its layer (`ablation`), the controls (`controls`, one class per file) and the verdict
rule (`verdict`). Shared by the streamed sweep and the naive full-model path."""
