"""``kvasir-ml quickstart --out DIR``: the main job on built-in synthetic data (CPU, offline, ~2.5 min)."""

from __future__ import annotations

import argparse
import os


def _quickstart(args: argparse.Namespace) -> int:
    # wandb prints a banner per run; the quickstart prints its own summary instead.
    os.environ.setdefault("WANDB_SILENT", "true")
    from kvasir_ml.experiment.quickstart import run_quickstart

    result = run_quickstart(args.out, n_images=args.images, epochs=args.epochs, seeds=tuple(args.seeds),
                            detector=not args.no_detector, tracking_mode=args.wandb, progress=not args.no_progress)
    print(result["summary"])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="synthesize data, train tiny multi-label/single-label classifiers and a "
                                          "YOLO detector on CPU, compare them, log to W&B offline")
    p.add_argument("--out", default="runs/quickstart", help="output folder (re-running reuses data and finished runs)")
    p.add_argument("--images", type=int, default=200, help="synthetic images (60/20/20 split)")
    p.add_argument("--epochs", type=int, default=6, help="classifier epochs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="classifier seeds")
    p.add_argument("--no-detector", action="store_true", help="skip the YOLO detector")
    p.add_argument("--wandb", choices=("offline", "disabled"), default="offline", help="W&B mode (never online)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_quickstart)
