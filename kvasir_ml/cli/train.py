"""``kvasir-ml train {classifier,detector} --config CONFIG --out RUN_DIR [key=value ...]``."""

from __future__ import annotations

import argparse
import os


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="experiment YAML under configs/")
    p.add_argument("--out", required=True, help="run folder (created; an existing run is never overwritten); "
                   "{wandb_run_id} is replaced by $WANDB_RUN_ID (W&B sweep trials)")
    p.add_argument("--resume", action="store_true", help="resume from RUN_DIR/checkpoints/last.pt")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, dotted keys for sections")


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
    train = sub.add_parser("train", help="train a classifier or a detector")
    kinds = train.add_subparsers(dest="kind", required=True, metavar="KIND")
    p = kinds.add_parser("classifier", help="multi-label or single-label ResNet (configs/classifier_*.yaml)")
    _add_common(p)
    p.set_defaults(func=_train_classifier)
    p = kinds.add_parser("detector", help="YOLO detector through ultralytics (configs/detector_*.yaml)")
    _add_common(p)
    p.set_defaults(func=_train_detector)
