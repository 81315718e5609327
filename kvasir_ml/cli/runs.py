"""``kvasir-ml runs compare RUN_DIR|ENTITY/PROJECT/RUN_ID ... [--out DIR]``: compare finished runs."""

from __future__ import annotations

import argparse

from kvasir_ml.cli.common import add_command, add_group, add_tracking_mode


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
    group = args.tracking_group or common_group(records)
    tracking = TrackingConfig(mode=args.tracking_mode, group=group, project=args.tracking_project)
    print_report(report_records(records, args.out, args.name, tracking, DEFAULT_HARD_PAIRS,
                                title=f"Run comparison: {args.name}"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    kinds = add_group(sub, "runs", dest="kind", help="work with finished runs")
    p = add_command(kinds, "compare", help="mean ± std table over seeds per variant from run folders "
                    "(offline) or W&B run paths entity/project/run_id (online)", examples=[
                        "kvasir-ml runs compare runs/ml-tiny runs/sl-tiny                 # print the table",
                        "kvasir-ml runs compare runs/ml-tiny runs/sl-tiny --out runs/cmp  # + report, plots, W&B run",
                        "kvasir-ml runs compare me/kvasir-ml/abc123 me/kvasir-ml/def456   # W&B runs (online)"])
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder (with metrics.json) or entity/project/run_id")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write comparison.json/.md, plots/ and a W&B compare run here; without it the table "
                        "is only printed")
    p.add_argument("--name", default="runs-compare", metavar="NAME", help="comparison name (W&B run <name>-compare)")
    p.add_argument("--tracking-group", default=None, metavar="GROUP",
                   help="W&B group of the compare run, as tracking.group (default: the group the runs share)")
    p.add_argument("--tracking-project", default="kvasir-ml", metavar="NAME",
                   help="W&B project of the compare run, as tracking.project")
    add_tracking_mode(p, what=" of the compare run (with --out)")
    p.set_defaults(func=_compare)
