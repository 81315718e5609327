"""``kvasir-ml quickstart --out DIR``: the main job on built-in synthetic data (CPU, offline, ~2.5-3 min)."""

from __future__ import annotations

import argparse
import os

from kvasir_ml.cli.common import add_command, add_tracking_mode, count


def _quickstart(args: argparse.Namespace) -> int:
    # wandb prints a banner per run; the quickstart prints its own summary instead.
    os.environ.setdefault("WANDB_SILENT", "true")
    from kvasir_ml.experiment.quickstart import run_quickstart

    result = run_quickstart(args.out, n_images=args.images, epochs=args.epochs, seeds=tuple(args.seeds),
                            detector=not args.no_detector, tracking_mode=args.tracking_mode, progress=not args.no_progress)
    print(result["summary"])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "quickstart", help="the whole job on built-in synthetic data: tiny multi-label and "
                    "single-label classifiers and a YOLO detector on CPU, compared, logged to W&B offline",
                    examples=["kvasir-ml quickstart --out runs/quickstart            # what `make demo` runs, ~3 min",
                              "kvasir-ml quickstart --out runs/qs-big --images 400 --epochs 10 --seeds 0 1 2",
                              "kvasir-ml quickstart --out runs/qs-fast --no-detector --tracking-mode disabled"],
                    description="Synthesize a Kvasir-like dataset, train the multi-label model and the "
                                "single-label baseline with the same input (inset masked), the multi-label model "
                                "with the inset branch (an inset ablation), each for every seed, and a YOLO "
                                "detector; score them on one held-out test split and write comparison.md/.json, plots "
                                "and offline W&B runs. CPU only, nothing downloaded; re-running reuses the data "
                                "and the finished runs.")
    p.add_argument("--out", default="runs/quickstart", metavar="DIR",
                   help="output folder (re-running reuses data and finished runs)")
    p.add_argument("--images", type=count(1), default=200, metavar="N",
                   help="number of synthetic images, split 60/20/20 (at least 16)")
    p.add_argument("--epochs", type=count(1), default=6, metavar="N", help="classifier epochs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], metavar="N",
                   help="classifier seeds (each variant is trained once per seed)")
    p.add_argument("--no-detector", action="store_true", help="skip the YOLO detector")
    add_tracking_mode(p, choices=("offline", "disabled"), what=" (never online here)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_quickstart)
