"""The GPU check: environment, bench_train (eager + compile), a classifier run stopped and
resumed in a new process, a time-bounded YOLO run on Kvasir-SEG; one results.json + logs.

    python scripts/gpu_check.py --out DIR [--budget-s 480] [--kvasir-seg DIR]    # on a GPU host (make gpu-check)
    python scripts/gpu_check.py --out DIR --dry-run                             # every step tiny on the CPU
    OUT=DIR python scripts/gpu_check.py                                         # --out defaults to $OUT

On an offline host, ``scripts/device/run.sh`` installs what is missing from ``.device/``
first (see the README). The steps and the results layout: ``kvasir_ml.gpucheck``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pathlib import Path

from kvasir_ml.gpucheck import DEFAULT_BUDGET_S, STEP_NAMES, run_check, table_rows

TESTS = Path(__file__).resolve().parents[1] / "tests" / "gpu"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT"), help="results folder (default: $OUT)")
    p.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="wall-clock budget of the whole check")
    p.add_argument("--dry-run", action="store_true", help="every step tiny on the CPU")
    p.add_argument("--kvasir-seg", default=os.environ.get("KVASIR_SEG_DIR"),
                   help="Kvasir-SEG folder for the detector (images/ + kavsir_bboxes.json); default $KVASIR_SEG_DIR")
    p.add_argument("--work", help="folder for data, caches and runs (default: temporary)")
    p.add_argument("--tests", default=str(TESTS) if TESTS.is_dir() else None,
                   help="the GPU tests the gpu_tests step runs with pytest -m gpu (default: the checkout's tests/gpu)")
    p.add_argument("--only", help=f"comma-separated steps of {','.join(STEP_NAMES)}")
    args = p.parse_args(argv)
    if not args.out:
        p.error("give --out or set $OUT")
    only = args.only.split(",") if args.only else None
    if only and not set(only) <= set(STEP_NAMES):
        p.error(f"--only: unknown steps {sorted(set(only) - set(STEP_NAMES))}")
    results = run_check(args.out, args.budget_s, args.dry_run, args.kvasir_seg, args.work, only, tests=args.tests)
    print(json.dumps(results["summary"], indent=1))
    print("README rows:\n" + "\n".join(table_rows(results)))
    print(f"results: {os.path.join(args.out, 'results.json')}")
    return 0 if all(results["summary"]["ok"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
