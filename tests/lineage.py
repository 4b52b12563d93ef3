"""Fine-tunes of a planted model, for the lineage tests: a copy of its weights with every weight
moved a little, its super weights either kept as they are or shrunk until zeroing them no longer
matters; and a report's verified coordinates and super experts as the registry hands a base's to
the check. Plain functions (the fixtures that build them live beside their tests; the timing
tools use them too)."""

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from workers.contract.lineage import BaseCoordinate, BaseExpert
from workers.contract.report import Report
from workers.fixtures.planted import PlantedModel

WEIGHTS = "model.safetensors"
# A fine-tune's change: every weight moved by 1% of its tensor's spread (seeded noise).
NOISE_SHARE = 0.01
NOISE_SEED = 2411
# A fine-tune that lost its super weights: each shrunk a thousandfold, still there (the same
# tensor and index) but far too small to carry the super activation.
LOST_SCALE = 1e-3


def fine_tune(base: PlantedModel, target: Path, *, keeps: bool) -> Path:
    """A copy of `base` at `target` (config and tokenizer as they are) whose weights all moved by
    NOISE_SHARE, with the planted super weights restored exactly (`keeps`) or scaled by
    LOST_SCALE."""
    shutil.copytree(base.path, target)
    original = load_file(base.path / WEIGHTS)
    weights = {name: tensor.clone() for name, tensor in original.items()}
    generator = torch.Generator().manual_seed(NOISE_SEED)
    for tensor in weights.values():
        if tensor.is_floating_point() and tensor.numel() > 1:
            tensor += torch.randn(tensor.shape, generator=generator) * tensor.std() * NOISE_SHARE
    for plant in base.plants:
        name, index = base.down_proj_tensor(plant.layer), base.stored_index(plant)
        kept = original[name][index]
        weights[name][index] = kept if keeps else kept * LOST_SCALE
    save_file(weights, target / WEIGHTS, metadata={"format": "pt"})
    return target


def shrink_weight(source: Path, target: Path, tensor: str, index: list[int]) -> Path:
    """A copy of the checkpoint at `source` whose one weight (`tensor`, `index`, as stored) is
    scaled by LOST_SCALE: a fine-tune that lost that super weight, every other weight as it was
    (any number of safetensors files)."""
    shutil.copytree(source, target)
    for path in sorted(target.glob("*.safetensors")):
        weights = load_file(path)
        if tensor in weights:
            weights[tensor][tuple(index)] *= LOST_SCALE
            save_file(weights, path, metadata={"format": "pt"})
            return target
    raise KeyError(f"no tensor {tensor} in {source}")


def base_coordinates(report: Report) -> list[BaseCoordinate]:
    """The report's verified coordinates as the registry hands them to the check."""
    found = []
    for sw in report.super_weights:
        if sw.state == "verified":
            assert sw.evidence.validation is not None  # verified by validation
            found.append(
                BaseCoordinate(
                    **sw.model_dump(
                        include={"tensor", "index", "layer", "module", "row", "col", "expert"}
                    ),
                    value=sw.value,
                    ratio=sw.evidence.validation.ablated.ratio,
                )
            )
    return found


def base_experts(report: Report) -> list[BaseExpert]:
    """The report's verified super experts as the registry hands them to the check."""
    return [
        BaseExpert(
            layer=e.layer,
            expert=e.expert,
            module=e.module,
            ratio=e.evidence["validation"]["pruned"]["ratio"],
        )
        for e in report.super_experts
        if e.state == "verified"
    ]
