"""Positive and negative controls of the multi- vs single-label comparison (synthetic data, CPU).

    .venv/bin/python scripts/bench_positive_control.py [--images 1000] [--epochs 10] [--seeds 0 1]
        [--out runs/controls] [--json [OUT.json]]

Positive control: findings co-occur independently of the class; the multi-label model must
beat the single-label one on macro AP over those labels, paired 95% interval above zero.
Negative control: label sets are a function of the class; the interval must hold zero.
See ``kvasir_ml.experiment.control``. With ``--json`` the last line of output is the result
as one JSON object (and it is also written to OUT.json when given). Sized for <= 20 min on
2 CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/controls"), help="experiment folders go here")
    parser.add_argument("--images", type=int, default=1000, help="synthetic images per control (60/20/20)")
    parser.add_argument("--size", type=int, default=64, help="classifier input side in px")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    parser.add_argument("--resamples", type=int, default=2000, help="paired-bootstrap resamples")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (1: robust on a busy 2-core machine)")
    parser.add_argument("--json", nargs="?", const="-", metavar="OUT.json",
                        help="print the result as JSON on the last line (and write it to OUT.json if given)")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_SILENT", "true")
    from kvasir_ml.experiment.control import run_controls
    from kvasir_ml.io import atomic_write_json

    load_before = os.getloadavg()[0]
    result = run_controls(args.out, args.images, args.size, args.epochs, args.seeds, args.resamples, args.threads)
    result["machine"] = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                         "cpu_count": os.cpu_count(), "load_avg_1min_before": round(load_before, 2),
                         "load_avg_1min_after": round(os.getloadavg()[0], 2)}
    for kind in ("positive", "negative"):
        r = result[kind]
        verdict = ("PASS" if r["passed"] else "FAIL") if kind == "positive" else \
            ("holds zero" if r["holds_zero"] else "EXCLUDES ZERO")
        print(f"{kind:9s} multi {r['multilabel']:.3f}  single {r['singlelabel']:.3f}  diff {r['diff']:+.3f} "
              f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]  {verdict}  ({r['wall_time_s']:.0f} s)")
    print(f"{result['metric']}; total {result['wall_time_s']:.0f} s")
    if args.json:
        text = json.dumps(result)
        if args.json != "-":
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(Path(args.json), result)
        print(text)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
