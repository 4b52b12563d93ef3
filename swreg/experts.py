"""Where a weight inside a routed expert is in a loaded transformers 5 model.

Checkpoints store experts two ways, and transformers 5 holds them all one way:

- one 2-D tensor per expert (`…experts.2.down_proj.weight` `[out, in]`: Qwen-MoE, Mixtral's
  `…experts.2.w2.weight`, DeepSeek, OLMoE). transformers stacks them while loading (its weight
  converter `MergeModulelist(dim=0)`) into one parameter `…experts.down_proj` `[experts, out, in]`:
  the stored `[r, c]` of expert `e` is the loaded `[e, r, c]`;
- one fused 3-D tensor of all experts, kept as stored under its own or a renamed key
  (gpt-oss `…experts.down_proj` `[experts, in, out]`; Granite-MoE `output_linear.weight`
  `[experts, out, in]`, loaded as `…experts.down_proj`): the stored index addresses it unchanged.

The stored name is turned into the loaded one by transformers' own renaming function and
conversion table (`get_model_conversion_mapping`), not by a copy of it; a conversion that does more
than stack experts (a concatenation, a split) would make a stored index ambiguous and is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from transformers import PreTrainedModel
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import (
    MergeModulelist,
    WeightConverter,
    WeightRenaming,
    rename_source_key,
)

from workers.contract.errors import InvalidInput

# The one conversion that keeps a stored index meaningful: experts stacked along a new first dim.
_STACKED_DIM = 0


@dataclass(frozen=True)
class LoadedPlace:
    """A stored tensor's place in the loaded model."""

    parameter: str  # the key in model.state_dict()
    expert_prefix: tuple[int, ...]  # () when stored as loaded; (expert,) when experts were stacked


def _expert_regex(pattern: str) -> re.Pattern:
    """transformers' source pattern (a regular expression in which `*` stands for the expert
    number: `build_glob_alternation` reads it so) with the number captured."""
    return re.compile(pattern.replace("*", r"(\d+)"))


def _stacks_experts(converter: WeightConverter) -> bool:
    operations = list(getattr(converter, "operations", []) or [])
    return (
        len(operations) == 1
        and isinstance(operations[0], MergeModulelist)
        and operations[0].dim == _STACKED_DIM
        and len(converter.source_patterns) == 1
    )


def loaded_place(model: PreTrainedModel, tensor: str) -> LoadedPlace:
    """Where the stored tensor `tensor` is held in `model`; `InvalidInput` when the model holds
    no such tensor or only a transform of it that a stored index cannot address."""
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    state = model.state_dict()
    loaded, pattern = rename_source_key(
        tensor, renamings, converters, model.base_model_prefix, state
    )
    if loaded not in state:
        raise InvalidInput(f"{tensor} is not a tensor of this {model.config.model_type} model")
    if pattern is None:
        return LoadedPlace(loaded, ())
    converter = next(c for c in converters if pattern in c.source_patterns)
    expert = _expert_regex(pattern).search(tensor)
    if not _stacks_experts(converter) or expert is None:
        raise InvalidInput(
            f"{tensor}: transformers converts it into {loaded} by more than stacking experts; "
            "a stored index cannot address the result"
        )
    return LoadedPlace(loaded, (int(expert.group(1)),))
