"""Zeroing the largest other weights of the tensor: shows that magnitude alone does not make a
weight critical (SmolLM2's layer 11: its 10 largest other weights move perplexity a little,
its super weight a lot; docs/measurements.md)."""

import torch

from workers.science.validation.controls.base import Control

TOP_K_CONTROL_WEIGHTS = 10


class TopKControl(Control):
    name = "top_k"

    def rules(self):
        return {"top_k_control_weights": TOP_K_CONTROL_WEIGHTS}

    def coordinates(self, weight_out_in, exclude, layer):
        cols = weight_out_in.shape[1]
        largest = torch.topk(
            weight_out_in.abs().reshape(-1), TOP_K_CONTROL_WEIGHTS + len(exclude)
        ).indices
        top = [divmod(int(i), cols) for i in largest]
        return [c for c in top if c not in exclude][:TOP_K_CONTROL_WEIGHTS]

    def details(self, zeroed, layer, stored_index):
        return {"k": len(zeroed), "indices": [stored_index(r, c) for r, c in zeroed]}
