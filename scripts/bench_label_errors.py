"""Label-error discovery on data with KNOWN injected noise (CPU): does `review suspects` find it?

    .venv/bin/python scripts/bench_label_errors.py [--images N] [--folds K] [--epochs E]
        [--detector-epochs E] [--out runs/bench_label_errors] [--json [OUT.json]]
    .venv/bin/python scripts/bench_label_errors.py --kvasir-seg DIR [--images N] ... [--json [OUT.json]]

Synthetic (default): frames from ``kvasir_ml.data.synth``; 10 % of all frames swapped to the
confusable partner of their class (esophagitis <-> normal-z-line, dyed-lifted-polyps <->
dyed-resection-margins) and 10 % of the boxes shifted, dropped or added (in turn); k-fold
training of the tiny classifier and detector; cleanlab ranking (``kvasir_ml.review``). With
``--kvasir-seg DIR`` (the real Kvasir-SEG folder: images/, kavsir_bboxes.json): a seeded sample
of its frames, 10 % of the boxes edited, detector-only k-fold. W&B is off in the fold runs.
With ``--json`` the last line is one JSON object: ``{"labels": {"precision_at_n",
"recall_at_2n", "n_injected", ...}, "boxes": {"precision_at_n", "recall_at_2n", "n_injected",
"by_noise", "image_level", ...}, "wall_s", "cpu_s", "machine", ...}`` (``labels`` is absent for
Kvasir-SEG), also written atomically to OUT.json when given. Goal: labels precision_at_n >= 0.6.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path


def _cpu_s() -> float:
    self, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self.ru_utime + self.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kvasir-seg", type=Path, metavar="DIR", help="real Kvasir-SEG folder: box noise only")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_label_errors"), help="data and fold runs go here")
    parser.add_argument("--images", type=int, default=None, help="frames (synthetic default 480, Kvasir-SEG 150)")
    parser.add_argument("--folds", type=int, default=2, help="k of the k-fold training")
    parser.add_argument("--epochs", type=int, default=16, help="classifier epochs per fold")
    parser.add_argument("--size", type=int, default=96, help="classifier input side in px")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads of the classifier runs")
    parser.add_argument("--detector-epochs", type=int, default=20, help="detector epochs per fold")
    parser.add_argument("--detector-size", type=int, default=128, help="detector train/predict size in px (x32)")
    parser.add_argument("--seed", type=int, default=0, help="data, noise and fold seed")
    parser.add_argument("--json", nargs="?", const="-", metavar="OUT.json",
                        help="print the result as JSON on the last line (and write it to OUT.json if given)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from kvasir_ml.io import atomic_write_json
    from kvasir_ml.review.bench import bench_kvasir_seg, bench_synthetic

    cls = ["tracking.mode=disabled", f"optim.epochs={args.epochs}", f"data.image_size_px={args.size}",
           f"runtime.threads={args.threads}"]
    det = ["tracking.mode=disabled", f"train.epochs={args.detector_epochs}", f"train.imgsz={args.detector_size}"]
    load_before, t0, c0 = os.getloadavg()[0], time.perf_counter(), _cpu_s()
    if args.kvasir_seg:
        result = bench_kvasir_seg(args.kvasir_seg, args.out, n_images=args.images or 150, k=args.folds,
                                  seed=args.seed, detector_overrides=det)
    else:
        result = bench_synthetic(args.out, n_images=args.images or 480, k=args.folds, seed=args.seed,
                                 classifier_overrides=cls, detector_overrides=det)
    result.update(wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(_cpu_s() - c0, 1),
                  detector_epochs=args.detector_epochs, detector_size_px=args.detector_size)
    if not args.kvasir_seg:
        result.update(classifier_epochs=args.epochs, classifier_size_px=args.size, classifier_threads=args.threads)
    result["machine"] = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                         "cpu_count": os.cpu_count(), "load_avg_1min_before": round(load_before, 2),
                         "load_avg_1min_after": round(os.getloadavg()[0], 2)}
    for kind in ("labels", "boxes"):
        if kind in result:
            r = result[kind]
            print(f"{kind:6s} precision@n {r['precision_at_n']}  recall@2n {r['recall_at_2n']}  n {r['n_injected']}")
    print(f"{result['dataset']}: {result['n_images']} images, {result['k']} folds; wall {result['wall_s']:.0f} s, "
          f"CPU {result['cpu_s']:.0f} s")
    if args.json:
        if args.json != "-":
            atomic_write_json(Path(args.json), result)
        print(json.dumps(result))
    goal = result.get("labels", {}).get("precision_at_n")
    return 0 if goal is None or goal >= 0.6 else 1


if __name__ == "__main__":
    sys.exit(main())
