"""Evidence and provenance in words: what the web pages show for a coordinate, built from the
same documents the API serves (`registry.superweights.documents`)."""

import math
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from registry.paths import API_PREFIX
from registry.superweights.ablation import ratio_text

NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def number(value: Any) -> float | None:
    """A stored number (non-finite ones are stored as strings) as a float."""
    if value is None:
        return None
    if isinstance(value, str):
        return NON_FINITE.get(value)
    return float(value)


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a person: thousands separated, infinities spelled out, missing as a dash."""
    x = number(value)
    if x is None:
        return "–"
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x != 0 and abs(x) < 10**-digits:
        return f"{x:.{digits}g}"
    return f"{x:,.{digits}f}"


def ratio(value: Any) -> str:
    x = number(value)
    return "–" if x is None else f"×{fmt(x, 3)}"


def model_path(model_id: str) -> str:
    return "/models/" + quote(model_id, safe="/")


def model_api_url(model_id: str) -> str:
    return f"{API_PREFIX}/models/{quote(model_id, safe='/')}"


def revision_api(model_id: str, revision: str) -> str:
    return f"{API_PREFIX}/models/{quote(model_id, safe='/')}/revisions/{quote(revision)}"


def profile_plot_url(model_id: str, revision: str) -> str:
    return revision_api(model_id, revision) + "/plots/profile.png"


def profile_json_url(model_id: str, revision: str) -> str:
    return revision_api(model_id, revision) + "/profile"


def ablation_plot_url(model_id: str, revision: str, sw: dict[str, Any]) -> str:
    query = urlencode({"tensor": sw["tensor"], "index": ",".join(str(i) for i in sw["index"])})
    return revision_api(model_id, revision) + "/plots/ablation.png?" + query


def quantization_plot_url(model_id: str, revision: str) -> str:
    return revision_api(model_id, revision) + "/plots/quantization.png"


def experts_plot_url(model_id: str, revision: str) -> str:
    return revision_api(model_id, revision) + "/plots/experts.png"


def _score_row(name: str, what: str, score: dict[str, Any]) -> dict[str, str]:
    """A run of an ablation in words: its perplexity, its ratio to the baseline, its KL."""
    return {
        "name": name,
        "what": what,
        "perplexity": fmt(score.get("perplexity")),
        "ratio": ratio(score.get("ratio", 1.0)),
        "kl": fmt(score.get("mean_kl_from_baseline"), 3),
        # A run stops once its verdict cannot change: its figures are over these predictions.
        "tokens": "–" if score.get("tokens") is None else f"{score['tokens']:,}",
    }


def _with_interval(row: dict[str, str], score: dict[str, Any]) -> dict[str, str]:
    """The row's ratio followed by its confidence interval, which the verdict is decided on."""
    interval = score.get("interval") or {}
    if interval.get("low") is not None and interval.get("high") is not None:
        row["ratio"] += f" ({fmt(interval['low'])}–{fmt(interval['high'])})"
    return row


def expert_validation_rows(evidence: dict[str, Any]) -> list[dict[str, str]] | None:
    """A super expert's validation, one row per run: the baseline, the expert pruned (still
    routed to, its output zero) and each control (random experts of the same layer pruned)."""
    validation = evidence.get("validation")
    if not validation:
        return None
    pruned = validation.get("pruned") or {}
    rows = [
        _score_row("baseline", "the model as it is", validation.get("baseline") or {}),
        _with_interval(_score_row("pruned", "this expert's output set to 0", pruned), pruned),
    ]
    for name, control in (validation.get("controls") or {}).items():
        experts = control.get("experts")
        # The experts a control pruned instead (numbers within the layer).
        named = ", ".join(str(e) for e in experts or [])
        plural = "s" if experts and len(experts) > 1 else ""
        what = f"expert{plural} {named} of the layer pruned" if experts else "a control"
        rows.append(_score_row(f"control: {name}", what, control))
    return rows


QUANTIZATION_VARIANTS = ("absmax", "clip", "clip_keep")


def quantization_rows(check: dict[str, Any]) -> list[dict[str, str]]:
    """One row per integer width and block size: each variant's perplexity and its ratio to the
    full-precision baseline (a stored check, non-finite numbers as strings)."""
    cells: dict[tuple[int, Any], dict[str, str]] = {}
    for result in check.get("results") or []:
        key = (result["bits"], result.get("block"))
        cells.setdefault(key, {})[result["variant"]] = (
            f"{fmt(result.get('perplexity'))} ({ratio(result.get('ratio'))})"
        )
    order = sorted(cells, key=lambda k: (-k[0], k[1] is None, k[1] or 0))
    return [
        {
            "bits": f"int{bits}",
            "block": "row" if block is None else f"{block:,}",
            **{v: cells[(bits, block)].get(v, "–") for v in QUANTIZATION_VARIANTS},
        }
        for bits, block in order
    ]


# What a page may link to: a source URL with any other scheme (javascript:, data:, file:, ...)
# is shown as text, never as a link.
LINK_SCHEMES = ("http", "https")


def link(url: Any) -> str | None:
    """`url` when it may be a link (http or https, with a host), else None."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url.strip())
    return url if parts.scheme.lower() in LINK_SCHEMES and parts.netloc else None


def sources(sw: dict[str, Any]) -> list[dict[str, Any]]:
    """Where a coordinate comes from, as a list: the provenance's own `sources` when it carries
    them, otherwise its one citation (published entries) or the detector that found it."""
    provenance = sw.get("provenance") or {}
    listed = provenance.get("sources")
    if isinstance(listed, list) and listed:
        return [s if isinstance(s, dict) else {"citation": str(s)} for s in listed]
    if provenance.get("detector_version"):
        found = {"citation": f"detected and validated by swreg {provenance['detector_version']}"}
        if provenance.get("citation"):  # verified: how to cite it
            found["note"] = f"cite as: {provenance['citation']}"
        return [found]
    if provenance.get("citation"):
        return [{"citation": provenance["citation"]}]
    return []


def detection_summary(evidence: dict[str, Any]) -> dict[str, Any] | None:
    detection = evidence.get("detection")
    if not detection:
        return None
    observations = detection.get("observations") or []
    strongest = max(
        observations, key=lambda o: abs(number(o.get("super_activation")) or 0), default=None
    )
    return {
        "seen": f"{len(detection.get('seen_in_prompts', []))} of {detection.get('prompts')} "
        "prompts",
        "stability": fmt(detection.get("stability")),
        "mean_share": fmt(detection.get("mean_share")),
        "strongest": strongest
        and {
            "prompt": strongest.get("prompt", 0) + 1,
            "token": strongest.get("token"),
            "super_activation": fmt(strongest.get("super_activation"), 1),
            "input_activation": fmt(strongest.get("input_activation"), 1),
            "share": fmt(strongest.get("share")),
            "spike_ratio": fmt(strongest.get("spike_ratio"), 0),
        },
    }


def validation_rows(evidence: dict[str, Any]) -> list[dict[str, str]] | None:
    """One row per run of the ablation: the baseline, zeroed, restored, each control."""
    validation = evidence.get("validation")
    if not validation:
        return None
    baseline = validation.get("baseline", {})
    base_stop = number(baseline.get("stop_word_probability"))

    def row(name: str, what: str, score: dict[str, Any]) -> dict[str, str]:
        stop = number(score.get("stop_word_probability"))
        shift = None if stop is None or base_stop is None else stop - base_stop
        return {
            **_score_row(name, what, score),
            "stop": fmt(stop, 3),
            "shift": "–" if shift is None else f"{shift:+.3f}",
        }

    ablated = validation.get("ablated") or {}
    zeroed = _with_interval(row("zeroed", "this weight set to 0", ablated), ablated)
    rows = [row("baseline", "the model as it is", baseline), zeroed]
    # Only where zeroing the weight moved perplexity is its super activation put back.
    if validation.get("restored"):
        rows.append(
            row("restored", "zeroed, its super activation put back", validation["restored"])
        )
    for name, control in (validation.get("controls") or {}).items():
        count = control.get("weights") or control.get("k")
        what = f"{count} other weights of the tensor zeroed" if count else "a control"
        rows.append(row(f"control: {name}", what, control))
    return rows


def verdict(evidence: dict[str, Any]) -> dict[str, str] | None:
    validation = evidence.get("validation") or {}
    return validation.get("verdict")


def eval_text(evidence: dict[str, Any]) -> dict[str, Any] | None:
    validation = evidence.get("validation") or {}
    return validation.get("eval")


def coordinate_anchor(revision: str, sw: dict[str, Any]) -> str:
    """The id of a coordinate's evidence card on its model page."""
    return f"sw-{revision[:12]}-{sw['layer']}-" + "-".join(str(i) for i in sw["index"])


def ratio_with_interval(sw: dict[str, Any]) -> str:
    """Zeroing the weight multiplied perplexity by this much, with the interval the verdict
    was decided on; a dash when it was never ablated."""
    return ratio_text(sw) or "–"
