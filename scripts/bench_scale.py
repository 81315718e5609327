"""Data pipeline cost per image as the data grows (issue 20 item 2): seconds and peak RSS per stage.

    .venv/bin/python scripts/bench_scale.py --json                       # 1k, 5k, 20k frames
    .venv/bin/python scripts/bench_scale.py --sizes 1000 5000 10000 --json --plot docs/scale.png
    .venv/bin/python scripts/bench_scale.py --sizes 1000 5000 --stages cache loader --work /tmp/bs --json out.json

Synthetic 720x576 JPEG frames with near-duplicate video runs (``kvasir_ml.data.video_frames``);
stages index, hashes (cold and warm hash store), split, cache build, one loader pass, predict,
each in its own process (``kvasir_ml.train.bench_scale``). The last line is one JSON object:
``sizes`` (per size and stage: seconds, per_image_ms, peak_rss_mb), the per-image ratio of the
largest size over the smallest, and a fit extrapolated to ``--extrapolate-n`` (110k: HyperKvasir's
labelled + unlabelled frames), whose quadratic comparison is measured at that size on random hashes.
``--stages`` times only those stages; earlier stages whose outputs are missing run untimed first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from kvasir_ml.train.bench_scale import STAGES  # stdlib imports only: --help stays quick

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "bench_scale_cpu.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000], metavar="N")
    ap.add_argument("--work", metavar="DIR", help="scratch folder (frames are reused if present); default: a temp dir")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES, metavar="STAGE",
                    help=f"stages to time (default all: {' '.join(STAGES)})")
    ap.add_argument("--extrapolate-n", type=int, default=110_000, metavar="N")
    ap.add_argument("--json", nargs="?", const=str(DEFAULT_OUT), default=None, metavar="OUT",
                    help=f"write the result JSON (default {DEFAULT_OUT.relative_to(REPO)})")
    ap.add_argument("--plot", metavar="PNG", help="write the per-image cost plot")
    args = ap.parse_args(argv)

    from kvasir_ml.io import atomic_write_json
    from kvasir_ml.train.bench_scale import compare_seconds, measure_size, plot_scale, summarize

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    load_before = os.getloadavg()
    sizes = [measure_size(n, work, log=lambda line: print(line, file=sys.stderr, flush=True), stages=tuple(args.stages))
             for n in sorted(args.sizes)]
    compare_s = compare_seconds(args.extrapolate_n) if any(s.startswith("hashes") for s in args.stages) else None
    result = {
        "sizes": sizes, **summarize(sizes, args.extrapolate_n, compare_s),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_before": [round(v, 2) for v in load_before],
                    "load_avg_after": [round(v, 2) for v in os.getloadavg()],
                    "note": "wall clock on a shared machine; other jobs ran at the same time"},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.plot:
        plot_scale(sizes, result, Path(args.plot), f"{os.cpu_count()} CPUs, load avg "
                   f"{result['machine']['load_avg_before'][0]}-{result['machine']['load_avg_after'][0]}")
    if args.json:
        atomic_write_json(args.json, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
