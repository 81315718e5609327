"""``kvasir-ml eval CHECKPOINT --out DIR [--data CANONICAL] [--root DIR] [--split FILE] [--subset ...]``."""

from __future__ import annotations

import argparse

from kvasir_ml.cli.common import add_command, add_device, add_trust_checkpoint


def _eval(args: argparse.Namespace) -> int:
    from kvasir_ml.checkpoint_eval import evaluate_checkpoint
    from kvasir_ml.results_schema import read_metrics

    path = evaluate_checkpoint(args.checkpoint, args.out, canonical=args.data, root=args.root, split_file=args.split,
                               subset=args.subset, device=args.device, trust=args.trust_checkpoint)
    metrics = read_metrics(path)
    subset = metrics.evaluated.subset if metrics.evaluated else "test"
    scores = metrics.scored(subset)
    keys = ("coco_ap", "coco_ap50", "ultralytics_map50") if metrics.kind == "detector" else (
        "macro_ap", "macro_f1", "top1")
    shown = "  ".join(f"{k} {scores.get(k):.4f}" for k in keys if isinstance(scores.get(k), float))
    print(f"{metrics.kind} on {metrics.dataset} ({subset}, {sum(metrics.n_images.values())} images): {shown}\n"
          f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "eval", help="score a classifier or detector checkpoint (metrics.json of a run's schema)",
                    examples=[
                        "kvasir-ml eval runs/ml-tiny/checkpoints/best.pt --out runs/ml-tiny-eval",
                        "kvasir-ml eval runs/det-seg/checkpoints/best.pt --out runs/det-seg-on-cvc \\",
                        "    --data data/cvc-clinicdb.coco.json",
                        "kvasir-ml eval runs/ml-tiny/checkpoints/best.pt --out runs/ml-tiny-val --subset val"],
                    description="Score a trained checkpoint through the training's own evaluation: without "
                                "--data, the run's data and split.json, so its test numbers come back exactly; "
                                "with --data, another canonical file (a split of it, or all of it: "
                                "cross-dataset). Writes DIR/metrics.json in a training run's schema, the scored "
                                "subset under its own key (test, val or all), plus 'evaluated'.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="RUN_DIR/checkpoints/best.pt of a classifier or detector run")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="new or empty folder for metrics.json, predictions and the image cache")
    p.add_argument("--data", metavar="CANONICAL",
                   help="canonical file to score on (default: the run's own data and split)")
    p.add_argument("--root", metavar="DIR",
                   help="folder the file names are relative to (default: the root the file remembers, else its folder)")
    p.add_argument("--split", metavar="FILE", help="split file of the data (default: the run's split.json for its "
                                                   "own data; none for --data)")
    p.add_argument("--subset", choices=("test", "val", "all"), default=None,
                   help="what to score: a split's test or val images, or all images (default: test with a split, "
                        "all without)")
    add_device(p, "where the model runs (a run trained on another device may differ in the last digits)")
    add_trust_checkpoint(p)
    p.set_defaults(func=_eval)
