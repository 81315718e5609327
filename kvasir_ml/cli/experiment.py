"""``kvasir-ml experiment compare --config CONFIG --out DIR [key=value ...]``."""

from __future__ import annotations

import argparse

from kvasir_ml.cli.common import add_command, add_group, add_overrides


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
    kinds = add_group(sub, "experiment", dest="kind",
                      help="multi-run experiments (multi-label vs single-label comparison)")
    p = add_command(kinds, "compare", help="train every variant x seed on one frozen split, then write the report "
                    "(configs/experiment_compare*.yaml); re-run to continue an experiment", examples=[
                        "kvasir-ml experiment compare --config configs/experiment_compare_tiny.yaml "
                        "--out runs/compare-tiny",
                        "kvasir-ml experiment compare --config configs/experiment_compare.yaml --out runs/compare \\",
                        "    'seeds=[0,1]' 'overrides=[optim.epochs=3]' tracking.mode=disabled"],
                    description="Train every variant (multi-label / single-label x inset mode) for every seed on "
                                "one frozen split, then write comparison.json/.md, plots and a W&B compare run. "
                                "Finished runs in --out are reused, so re-running continues a stopped experiment; "
                                "a finished run whose config differs is an error.")
    p.add_argument("--config", required=True, metavar="CONFIG",
                   help="experiment YAML: a file or a shipped config's name (configs/experiment_compare*.yaml)")
    p.add_argument("--out", required=True, metavar="DIR", help="experiment folder (finished runs in it are reused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar over the runs")
    add_overrides(p, help="experiment config overrides after the options (same syntax as for `train`): "
                          "seeds=[0,1] tracking.mode=disabled; 'overrides=[optim.epochs=3]' passes overrides "
                          "to every run's classifier config; `kvasir-ml config show CONFIG` lists every key")
    p.set_defaults(func=_compare)
