"""The figures of stored results as PNG bytes: the profile of a model revision, the ablation
evidence of one coordinate, a revision's quantization check, the per-layer/per-expert heat map of
a mixture-of-experts revision (drawn by `registry.web.plots`).

Drawing takes a few hundred milliseconds, so the bytes are kept per input (the stored profile or
evidence and the marks drawn on it): a figure is drawn again only when what it shows changed.
"""

import json
import threading
from functools import lru_cache

from registry.errors import NotFound
from registry.superweights.models import ModelRevision, SuperWeight
from registry.web import plots
from workers.contract.quantization import QuantizationCheck
from workers.contract.report import ExpertProfile, LayerProfile, ValidationEvidence

# Figures kept in memory (about 30 to 80 KB each).
RENDER_CACHE_SIZE = 64
# Matplotlib's text rendering shares font objects between figures: one drawing at a time.
_DRAW_LOCK = threading.Lock()


def _png(figure) -> bytes:
    with _DRAW_LOCK:
        return plots.render(figure, "png")


def _ratio(value) -> float | None:
    return None if value is None else float(value)  # "Infinity" and friends included


def profile_key(rev: ModelRevision) -> str:
    """What the profile figure of `rev` shows, as text (read within the database timeout)."""
    if not rev.profile:
        raise NotFound(
            f"no per-layer profile for {rev.model_id} at {rev.revision}: "
            "it was not recorded by a detection run"
        )
    marks = sorted([sw.layer, sw.row, sw.col, sw.state] for sw in rev.super_weights)
    title = f"{rev.model_id} @ {rev.revision[:19]}: max |down_proj input| and |output| per layer"
    return json.dumps({"profile": rev.profile, "marks": marks, "title": title}, sort_keys=True)


@lru_cache(maxsize=RENDER_CACHE_SIZE)
def draw_profile(key: str) -> bytes:
    data = json.loads(key)
    profile = data["profile"]
    figure = plots.profile_figure(
        [LayerProfile.model_validate(layer) for layer in profile["layers"]],
        prompts=profile.get("prompts", []),
        marks=[plots.Mark(*mark) for mark in data["marks"]],
        ratio=_ratio(profile.get("super_activation_ratio")),
        title=data["title"],
    )
    return _png(figure)


def ablation_key(sw: SuperWeight, model_id: str, revision: str) -> str:
    """What the ablation figure of `sw` shows, as text (read within the database timeout)."""
    validation = (sw.evidence or {}).get("validation")
    if not validation:
        raise NotFound(
            f"no ablation evidence for {sw.tensor} {list(sw.index)} of {model_id} at {revision} "
            f"(state {sw.state})"
        )
    title = plots.coordinate_title(sw.tensor, sw.index)
    return json.dumps({"validation": validation, "title": title}, sort_keys=True)


@lru_cache(maxsize=RENDER_CACHE_SIZE)
def draw_ablation(key: str) -> bytes:
    data = json.loads(key)
    figure = plots.ablation_figure(
        ValidationEvidence.model_validate(data["validation"]), title=data["title"]
    )
    return _png(figure)


def quantization_key(rev: ModelRevision) -> str:
    """What the quantization figure of `rev` shows, as text (read within the database timeout)."""
    if not rev.quantization_check:
        raise NotFound(
            f"no quantization check for {rev.model_id} at {rev.revision}: none was run "
            "(swreg quantize-check, or a job with SWREG_QUANTIZE_CHECK=1)"
        )
    title = f"{rev.model_id} @ {rev.revision[:19]}"
    return json.dumps({"check": rev.quantization_check, "title": title}, sort_keys=True)


@lru_cache(maxsize=RENDER_CACHE_SIZE)
def draw_quantization(key: str) -> bytes:
    data = json.loads(key)
    figure = plots.quantization_figure(
        QuantizationCheck.model_validate(data["check"]), title=data["title"]
    )
    return _png(figure)


def experts_key(rev: ModelRevision) -> str:
    """What the experts heat map of `rev` shows, as text (read within the database timeout)."""
    experts = (rev.profile or {}).get("experts")
    if not experts:
        raise NotFound(
            f"no per-expert profile for {rev.model_id} at {rev.revision}: "
            "not a mixture-of-experts revision recorded by a detection run"
        )
    marks = sorted([se.layer, se.expert, se.state] for se in rev.super_experts)
    title = f"{rev.model_id} @ {rev.revision[:19]}: max |down_proj output| per layer and expert"
    return json.dumps({"experts": experts, "marks": marks, "title": title}, sort_keys=True)


@lru_cache(maxsize=RENDER_CACHE_SIZE)
def draw_experts(key: str) -> bytes:
    data = json.loads(key)
    figure = plots.experts_figure(
        [ExpertProfile.model_validate(layer) for layer in data["experts"]],
        marks=[plots.ExpertMark(*mark) for mark in data["marks"]],
        title=data["title"],
    )
    return _png(figure)
