"""The architectures swreg knows: where each keeps its decoder layers and its down projection.

An architecture that is not in this table is refused, never guessed: a wrong down projection
would produce coordinates that look right and name the wrong scalar.
"""

from dataclasses import dataclass
from enum import Enum

from workers.science.errors import UnsupportedArchitecture


class WeightLayout(str, Enum):
    """How the down projection's weight is stored in the checkpoint."""

    # nn.Linear: weight is [out_features, in_features], so index == [row, col].
    LINEAR = "linear"
    # GPT-2's Conv1D: weight is [in_features, out_features], so index == [col, row].
    CONV1D = "conv1d"


@dataclass(frozen=True)
class Architecture:
    model_type: str
    layers: str  # attribute path of the decoder layers (an nn.ModuleList) in the *ForCausalLM model
    down_proj: str  # path of the down projection inside one decoder layer
    layout: WeightLayout = WeightLayout.LINEAR
    # Attention kernel, the same on the streamed and the full-model paths so they compute alike;
    # "eager" where transformers has no SDPA version of the architecture.
    attention: str = "sdpa"
    # Whether a decoder layer returns a tuple (hidden_states, ...) rather than a tensor.
    layer_returns_tuple: bool = False

    def down_proj_param(self, layer: int) -> str:
        """The model's parameter name of layer `layer`'s down projection weight."""
        return f"{self.layers}.{layer}.{self.down_proj}.weight"

    def stored_index(self, row: int, col: int) -> list[int]:
        return [row, col] if self.layout is WeightLayout.LINEAR else [col, row]

    def row_col(self, index: list[int] | tuple[int, int]) -> tuple[int, int]:
        a, b = index
        return (a, b) if self.layout is WeightLayout.LINEAR else (b, a)

    def out_in(self, weight):
        """The down projection's weight (a tensor as stored) viewed as [out (row), in (col)]."""
        return weight if self.layout is WeightLayout.LINEAR else weight.t()


def _llama_like(model_type: str) -> Architecture:
    return Architecture(model_type, layers="model.layers", down_proj="mlp.down_proj")


ARCHITECTURES: dict[str, Architecture] = {
    **{
        name: _llama_like(name)
        for name in (
            "llama",
            "mistral",
            "qwen2",
            "qwen3",
            "gemma",
            "gemma3_text",
            "olmo",
            "olmo2",
            "phi3",
        )
    },
    "gemma2": Architecture("gemma2", "model.layers", "mlp.down_proj", attention="eager"),
    "gpt_neox": Architecture("gpt_neox", layers="gpt_neox.layers", down_proj="mlp.dense_4h_to_h"),
    "falcon": Architecture(
        "falcon", layers="transformer.h", down_proj="mlp.dense_4h_to_h", layer_returns_tuple=True
    ),
    "gpt2": Architecture(
        "gpt2", layers="transformer.h", down_proj="mlp.c_proj", layout=WeightLayout.CONV1D
    ),
    "opt": Architecture("opt", layers="model.decoder.layers", down_proj="fc2"),
}


def architecture_for(model_type: str | None) -> Architecture:
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    supported = ", ".join(sorted(ARCHITECTURES))
    raise UnsupportedArchitecture(
        f"unsupported architecture {model_type!r}: swreg knows where the down projection is "
        f"only for {supported}"
    )
