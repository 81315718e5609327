"""``kvasir-ml experiment compare --config CONFIG --out DIR [key=value ...]``."""

from __future__ import annotations

import argparse


def _compare(args: argparse.Namespace) -> int:
    from kvasir_ml.experiment.config import load_experiment_config
    from kvasir_ml.experiment.orchestrate import run_comparison

    cfg = load_experiment_config(args.config, args.overrides)
    print_report(run_comparison(cfg, args.out, progress=not args.no_progress))
    return 0


def print_report(result: dict) -> None:
    """The metrics table and where the report and the W&B compare run are (rank 0 of torchrun only)."""
    from kvasir_ml.experiment.report import metrics_table

    if result["comparison"] is None:  # a non-zero torchrun rank: rank 0 wrote and prints the report
        return
    print(metrics_table(result["comparison"]))
    print(f"report: {result['paths']['markdown']}  {result['paths']['json']}")
    if result["wandb_dir"]:
        print(f"W&B compare run: {result['wandb_dir']}")


def register(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser("experiment", help="multi-run experiments (multi-label vs single-label comparison)")
    kinds = exp.add_subparsers(dest="kind", required=True, metavar="KIND")
    p = kinds.add_parser("compare", help="train every variant x seed on one frozen split, then write the report "
                                         "(configs/experiment_compare*.yaml); re-run to continue an experiment")
    p.add_argument("--config", required=True, help="experiment YAML (configs/experiment_compare.yaml)")
    p.add_argument("--out", required=True, help="experiment folder (finished runs in it are reused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar over the runs")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="experiment config overrides, e.g. seeds=[0,1] 'overrides=[optim.epochs=3]'")
    p.set_defaults(func=_compare)
