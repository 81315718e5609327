"""Multi-label vs single-label comparison: every variant x seed on one frozen split, then the report.

    python scripts/compare_multilabel_vs_singlelabel.py --config configs/experiment_compare.yaml \
        --out runs/compare [key=value ...]

Same as ``kvasir-ml experiment compare``; re-running with the same --out continues the experiment.
"""

from __future__ import annotations

import sys

from kvasir_ml.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "compare", *sys.argv[1:]]))
