"""``kvasir-ml runs compare RUN_DIR|ENTITY/PROJECT/RUN_ID ... [--out DIR]``: compare finished runs."""

from __future__ import annotations

import argparse


def _compare(args: argparse.Namespace) -> int:
    from kvasir_ml.cli.experiment import print_report
    from kvasir_ml.config import TrackingConfig
    from kvasir_ml.experiment.compare import common_group, compare_runs, load_runs
    from kvasir_ml.experiment.config import DEFAULT_HARD_PAIRS
    from kvasir_ml.experiment.orchestrate import report_records
    from kvasir_ml.experiment.report import metrics_table

    records = load_runs(args.runs)
    if args.out is None:  # print only: nothing written, no W&B run
        print(metrics_table(compare_runs(records, DEFAULT_HARD_PAIRS)))
        return 0
    group = args.group or common_group(records)
    tracking = TrackingConfig(mode=args.wandb, group=group, project=args.project)
    print_report(report_records(records, args.out, args.name, tracking, DEFAULT_HARD_PAIRS,
                                title=f"Run comparison: {args.name}"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="work with finished runs")
    kinds = runs.add_subparsers(dest="kind", required=True, metavar="KIND")
    p = kinds.add_parser("compare", help="mean ± std table over seeds per variant from run folders "
                                         "(offline) or W&B run paths entity/project/run_id (online)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder (with metrics.json) or entity/project/run_id")
    p.add_argument("--out", default=None, help="write comparison.json/.md, plots/ and a W&B compare run here; "
                                               "without it the table is only printed")
    p.add_argument("--name", default="runs-compare", help="comparison name (W&B run <name>-compare)")
    p.add_argument("--group", default=None, help="W&B group of the compare run; default: the group the runs share")
    p.add_argument("--project", default="kvasir-ml", help="W&B project of the compare run")
    p.add_argument("--wandb", choices=("offline", "online", "disabled"), default="offline",
                   help="W&B mode of the compare run (with --out)")
    p.set_defaults(func=_compare)
