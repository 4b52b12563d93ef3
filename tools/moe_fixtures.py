"""Print the planted mixture-of-experts fixtures' results as a Markdown table: per family, its disk
layout, the planted super weight and what swreg found (tensor, index as stored, verdict with its
interval), the super expert's verdict by pruning against random experts, and whether the decoy or
an unreached expert was reported.

    .venv/bin/python tools/moe_fixtures.py          # about a minute on two cores
"""

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.fixtures.planted_moe import MOE_FAMILIES, build_planted_moe  # noqa: E402
from workers.science.pipeline.steps import AnalysisOptions  # noqa: E402
from workers.science.pipeline.sweep import analyse  # noqa: E402


def _interval(score: dict) -> str:
    interval = score["interval"]
    return f"x{score['ratio']:.0f} [{interval['low']:.0f}, {interval['high']:.0f}]"


def main() -> None:
    torch.set_num_threads(1)
    print(
        "| family | layout | super weight (stored) | verdict, ratio [CI] | super expert | "
        "verdict, ratio [CI] | random experts pruned | decoy / unreached reported |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for family in MOE_FAMILIES:
            p = build_planted_moe(family, Path(tmp) / family)
            report = analyse(p.path, AnalysisOptions()).as_json_dict()
            weight = next(
                c
                for c in report["super_weights"]
                if (c["layer"], c["expert"], c["row"], c["col"])
                == (p.layer, p.super_expert, p.row, p.col)
            )
            ablated = weight["evidence"]["validation"]["ablated"]
            expert = next(
                e
                for e in report["super_experts"]
                if (e["layer"], e["expert"]) == (p.layer, p.super_expert)
            )
            pruned = expert["evidence"]["validation"]
            controls = ", ".join(
                f"{c['experts'][0]}: x{c['ratio']:.3f}" for c in pruned["controls"].values()
            )
            wrong = any(
                (c["expert"], c["row"], c["col"]) == (p.decoy_expert, p.decoy_row, p.decoy_col)
                or c["expert"] in p.unreached
                for c in report["super_weights"]
            ) or any(e["expert"] in p.unreached for e in report["super_experts"])
            extra = []
            if p.family.shared_expert:
                extra.append("shared expert")
            if p.family.dense_layers:
                extra.append(f"dense layers {list(p.family.dense_layers)}")
            layout = p.family.layout + (f" ({', '.join(extra)})" if extra else "")
            print(
                f"| {family} | {layout} | `{weight['tensor']}` {weight['index']} = "
                f"{weight['value']} "
                f"| {weight['state']}, {_interval(ablated)} | layer {p.layer} expert "
                f"{p.super_expert} "
                f"| {expert['state']}, {_interval(pruned['pruned'])} | {controls} | "
                f"{'yes' if wrong else 'no'} |"
            )


if __name__ == "__main__":
    main()
