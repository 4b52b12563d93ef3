"""The lineage check of a mixture-of-experts base's super expert, on planted models of three
families (one tensor per expert, fused experts): the verified super expert pruned by the check's
own sweep in the base's unchanged weights (it must be `kept`, with detection's own ratio) and in
a fine-tune whose super weight inside that expert was shrunk a thousandfold (`lost`).

    .venv/bin/python tools/lineage_experts_timing.py        # about half a minute on two cores
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lineage import base_experts, shrink_weight  # noqa: E402
from workers.fixtures.planted_moe import build_planted_moe  # noqa: E402
from workers.science.pipeline.lineage import ToCheck, lineage_check, routed_experts  # noqa: E402
from workers.science.pipeline.steps import AnalysisOptions  # noqa: E402
from workers.science.pipeline.sweep import analyse  # noqa: E402

FAMILIES = ("qwen3_moe", "gpt_oss", "mixtral")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="swreg-lineage-experts-"))
    for family in FAMILIES:
        planted = build_planted_moe(family, root / family)
        report = analyse(planted.path, AnalysisOptions())
        (weight,) = [sw for sw in report.super_weights if sw.state == "verified"]
        experts = base_experts(report)
        lost = shrink_weight(planted.path, root / f"{family}-lost", weight.tensor, weight.index)
        lost_report = analyse(lost, AnalysisOptions())
        for name, path, own in (
            ("same weights", planted.path, report),
            ("lost", lost, lost_report),
        ):
            started = time.perf_counter()
            (checked,) = lineage_check(path, ToCheck([], experts, routed_experts(own))).experts
            seconds = time.perf_counter() - started
            assert checked.ratio is not None and checked.interval is not None
            print(
                f"{family:10s} {name:12s} base ×{experts[0].ratio:,.2f} -> {checked.outcome:6s} "
                f"×{checked.ratio:,.3f} ({checked.interval.low:,.3f}–{checked.interval.high:,.3f})"
                f" {seconds:.2f} s"
            )


if __name__ == "__main__":
    main()
