"""Positive, negative and A/A controls of the multi- vs single-label comparison (synthetic data, CPU).

    .venv/bin/python scripts/bench_positive_control.py [--images N] [--size PX] [--epochs E]
        [--contrast C] [--seeds 0 1 2 3 4 5] [--out runs/controls] [--json [OUT.json]]

Positive control: findings co-occur independently of the class; the multi-label model must
beat the single-label one on macro AP over those labels with a seed-aware ``*``, by at least
3 seed-to-seed SDs. Negative control: label sets are a function of the class, findings
faded to half contrast; no ``*``, and the single-label model's macro AP on those labels at
most 0.95 (so that it could fail).
A/A control: each variant's seeds split in halves, half against half: false-``*`` rate
<= 5 % over >= 40 cells. See ``kvasir_ml.experiment.control`` (``CONTROL_SIZES``: positive
1000 images / 64 px / 10 epochs, negative 600 / 48 px / 8 epochs; ``--images`` etc. set both).
The 24 runs are shared by two worker processes. With ``--json`` the last line of output is the result as one JSON object
(``{"positive": {"diff", "ci95", ...}, "negative": {"diff", "ci95", "single_macro_ap", ...},
"aa": {"cells", "starred", ...}, ...}``), also written to OUT.json when given. Sized for
<= 25 min on 2 quiet CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path


SEEDS = (0, 1, 2, 3, 4, 5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/controls"), help="experiment folders go here")
    parser.add_argument("--images", type=int, help="synthetic images per control (60/20/20); default per control")
    parser.add_argument("--size", type=int, help="classifier input side in px; default per control")
    parser.add_argument("--epochs", type=int, help="epochs per run; default per control")
    parser.add_argument("--contrast", type=float, help="finding contrast of both controls' data; default per control")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="training seeds (the A/A control needs >= 6: two halves of 3)")
    parser.add_argument("--resamples", type=int, default=2000, help="paired-bootstrap resamples")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (1: robust on a busy 2-core machine)")
    parser.add_argument("--workers", type=int, default=2, help="runs trained at once (1: all in this process)")
    parser.add_argument("--json", nargs="?", const="-", metavar="OUT.json",
                        help="print the result as JSON on the last line (and write it to OUT.json if given)")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_SILENT", "true")
    from dataclasses import replace

    from kvasir_ml.experiment.control import CONTROL_SIZES, run_controls
    from kvasir_ml.io import atomic_write_json

    load_before = os.getloadavg()[0]
    given = {"n_images": args.images, "image_size_px": args.size, "epochs": args.epochs,
             "finding_contrast": args.contrast}
    given = {k: v for k, v in given.items() if v is not None}
    sizes = {kind: replace(size, **given) for kind, size in CONTROL_SIZES.items()}
    result = run_controls(args.out, sizes, args.seeds, args.resamples, args.threads, workers=args.workers)
    result["machine"] = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                         "cpu_count": os.cpu_count(), "load_avg_1min_before": round(load_before, 2),
                         "load_avg_1min_after": round(os.getloadavg()[0], 2)}
    for kind in ("positive", "negative"):
        r = result[kind]
        ci = "[{:+.3f}, {:+.3f}]".format(*r["ci95"]) if r["ci95"] else "[no interval]"
        ratio = f"{r['effect_over_seed_sd']:.1f}" if r["effect_over_seed_sd"] is not None else "?"
        print(f"{kind:9s} multi {r['multilabel']:.3f}  single {r['singlelabel']:.3f}  diff {r['diff']:+.3f} {ci} "
              f"({r['verdict']}; effect/seed SD {ratio})  {'PASS' if r['passed'] else 'FAIL'}  "
              f"({r['cpu_s']:.0f} CPU s)")
    aa = result["aa"]
    print(f"A/A       {aa['starred']} of {aa['cells']} cells starred"
          + (f" ({aa['rate']:.1%})" if aa["rate"] is not None else "") + f"  {'PASS' if aa['passed'] else 'FAIL'}")
    print(f"{result['metric']}; total {result['wall_time_s']:.0f} s wall, {result['cpu_s']:.0f} s training CPU")
    if args.json:
        text = json.dumps(result)
        if args.json != "-":
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(Path(args.json), result)
        print(text)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
