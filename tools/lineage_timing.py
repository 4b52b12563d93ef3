"""Time the lineage check's own ablation (the sweep that checks a base's coordinates detection did
not judge) against a whole analysis, on the real SmolLM2-135M-Instruct copy
(`swreg fetch-example`): the model is its own "fine-tune", so the check must say `kept` with the
ratio and interval detection measured.

    .venv/bin/python tools/lineage_timing.py        # about a minute and a half on two cores
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lineage import base_coordinates  # noqa: E402
from workers.fixtures.smollm2 import smollm2_dir  # noqa: E402
from workers.science.pipeline.lineage import ToCheck, lineage_check  # noqa: E402
from workers.science.pipeline.steps import AnalysisOptions  # noqa: E402
from workers.science.pipeline.sweep import analyse  # noqa: E402


def main() -> None:
    path = smollm2_dir()
    started = time.perf_counter()
    report = analyse(path, AnalysisOptions())
    analysed = time.perf_counter() - started
    base = base_coordinates(report)
    started = time.perf_counter()
    checked = lineage_check(path, ToCheck(base), AnalysisOptions()).coordinates
    checking = time.perf_counter() - started
    print(
        json.dumps(
            {
                "analyse_seconds": round(analysed, 1),
                "lineage_check_seconds": round(checking, 1),
                "checked": [
                    {
                        "tensor": c.tensor,
                        "index": c.index,
                        "outcome": c.outcome,
                        "ratio": c.ratio,
                        "interval": [c.interval.low, c.interval.high] if c.interval else None,
                        "detection_ratio": c.base_ratio,
                    }
                    for c in checked
                ],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
