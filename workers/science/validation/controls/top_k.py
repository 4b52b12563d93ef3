"""Zeroing the largest other weights of the tensor: shows that magnitude alone does not make a
weight critical (SmolLM2's layer 11: its 10 largest other weights move perplexity a little,
its super weight a lot; docs/measurements.md)."""

import torch

from workers.science.validation.controls.base import Control

TOP_K_CONTROL_WEIGHTS = 10
# Rows searched at a time: the magnitudes of a whole 7B-shaped matrix (and the index space a
# top-k over it takes) would cost hundreds of MB next to a streamed layer; a block costs little.
ROWS_PER_BLOCK = 256


def largest(weight_out_in: torch.Tensor, count: int) -> list[tuple[int, int]]:
    """(row, col) of the `count` largest-magnitude weights, largest first, found block by block."""
    rows, cols = weight_out_in.shape
    values, flat = [], []
    for start in range(0, rows, ROWS_PER_BLOCK):
        block = weight_out_in[start : start + ROWS_PER_BLOCK].abs().reshape(-1)
        top = torch.topk(block, min(count, block.numel()))
        values.append(top.values)
        flat.append(top.indices + start * cols)
    best = torch.topk(torch.cat(values), count)
    return [divmod(int(i), cols) for i in torch.cat(flat)[best.indices]]


class TopKControl(Control):
    name = "top_k"

    def rules(self):
        return {"top_k_control_weights": TOP_K_CONTROL_WEIGHTS}

    def coordinates(self, weight_out_in, exclude, layer):
        top = largest(weight_out_in, TOP_K_CONTROL_WEIGHTS + len(exclude))
        return [c for c in top if c not in exclude][:TOP_K_CONTROL_WEIGHTS]

    def details(self, zeroed, layer, stored_index):
        return {"k": len(zeroed), "indices": [stored_index(r, c) for r, c in zeroed]}
