"""``kvasir-ml train {classifier,detector} --config CONFIG --out RUN_DIR [key=value ...]``."""

from __future__ import annotations

import argparse
import os

from kvasir_ml.cli.common import add_command, add_group, add_overrides


def _add_common(p: argparse.ArgumentParser, kind: str, resume_help: str) -> None:
    p.add_argument("--config", required=True, metavar="CONFIG",
                   help=f"{kind} YAML (kind: {kind}): a file or a shipped config's name (under configs/)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder (created; an existing run is never overwritten); {wandb_run_id} is "
                        "replaced by $WANDB_RUN_ID (W&B sweep trials)")
    p.add_argument("--resume", action="store_true", help=resume_help)
    add_overrides(p)


def expand_out(out: str) -> str:
    """Replace ``{wandb_run_id}`` in ``--out`` with $WANDB_RUN_ID, which ``wandb agent`` sets for
    each sweep trial, so every trial gets its own run folder (configs/sweep_classifier.yaml)."""
    if "{wandb_run_id}" not in out:
        return out
    run_id = os.environ.get("WANDB_RUN_ID")
    if not run_id:
        raise ValueError(f"--out {out!r} uses {{wandb_run_id}} but WANDB_RUN_ID is not set (wandb agent sets it)")
    return out.replace("{wandb_run_id}", run_id)


def _train_classifier(args: argparse.Namespace) -> int:
    from kvasir_ml.train.run import train_classifier_from_cli

    run_dir = train_classifier_from_cli(args.config, expand_out(args.out), args.overrides, resume=args.resume)
    print(f"run folder: {run_dir}  (metrics: {run_dir / 'metrics.json'})")
    return 0


def _train_detector(args: argparse.Namespace) -> int:
    from kvasir_ml.detection.run import train_detector_from_cli

    run_dir = train_detector_from_cli(args.config, expand_out(args.out), args.overrides, resume=args.resume)
    print(f"run folder: {run_dir}  (metrics: {run_dir / 'metrics.json'})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    kinds = add_group(sub, "train", dest="kind", help="train a classifier or a detector into a run folder",
                      description="Train a classifier or a detector. A run folder holds the resolved config, "
                                  "the split, checkpoints, metrics.json, plots and the offline W&B run.")
    p = add_command(kinds, "classifier", help="multi-label or single-label ResNet (configs/classifier_*.yaml)",
                    examples=[
                        "kvasir-ml train classifier --config configs/classifier_multilabel_tiny.yaml --out runs/ml-tiny",
                        "kvasir-ml train classifier --config configs/classifier_multilabel_resnet50.yaml "
                        "--out runs/ml-r50 \\",
                        "    data.canonical=data/kvasir-v2.coco.json data.root=/data/kvasir-v2 model.weights=imagenet",
                        "kvasir-ml train classifier --config configs/classifier_multilabel_resnet50.yaml "
                        "--out runs/ml-r50 --resume"])
    _add_common(p, "classifier", "continue a stopped run from RUN_DIR/checkpoints/last.pt; give the same "
                "--config and overrides (only tracking.* and runtime.device/workers/threads/progress/compile "
                "may differ); a run that failed before its first checkpoint starts again")
    p.set_defaults(func=_train_classifier)
    p = add_command(kinds, "detector", help="YOLO detector through ultralytics (configs/detector_*.yaml)",
                    examples=[
                        "kvasir-ml train detector --config configs/detector_tiny.yaml --out runs/det-tiny",
                        "kvasir-ml train detector --config configs/detector_kvasir_seg.yaml --out runs/det-seg \\",
                        "    data.canonical=data/kvasir-seg.coco.json data.root=../shared/data/kvasir-seg",
                        "kvasir-ml train detector --config configs/detector_tiny.yaml --out runs/det-tiny --resume"])
    _add_common(p, "detector", "continue a stopped run from ultralytics' RUN_DIR/ultralytics/weights/last.pt; "
                "give the same --config and overrides as the run's config.yaml (only tracking.* and "
                "train.device/workers may differ); a run that failed before its first checkpoint starts again")
    p.set_defaults(func=_train_detector)
