"""Streaming `kvasir-ml predict` (JSON Lines) against a bare forward pass of the same model, one process.

    python scripts/bench_predict.py --json                      # untrained resnet50 @ 224 px, 256 frames
    python scripts/bench_predict.py --n 20000 --device cuda --workers 12 --batch 128 --json
    python scripts/bench_predict.py --classifier runs/ml-r50/checkpoints/best.pt --frames DIR --json

The last line is one JSON object with stream_img_s, bare_img_s and their ratio (the goal:
ratio >= 0.9), the process's peak RSS and the machine's load (the bare pass is timed before
and after the stream, averaged). With --repeats N the whole bare-stream-bare run is repeated
and the median run is reported, with every run's ratio in "ratios" (on a shared 2-core
machine one run's ratio carries roughly +-10 % of noise). Frames are synthetic 720x576 JPEGs unless --frames is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from kvasir_ml.io import atomic_write_json
from kvasir_ml.inference.bench import predict_throughput, untrained_checkpoint, write_frames
from kvasir_ml.inference.stream import list_images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="synthetic frames (ignored with --frames)")
    parser.add_argument("--frames", help="a folder of images to predict instead of synthetic frames")
    parser.add_argument("--classifier", help="classifier checkpoint (default: an untrained --arch one)")
    parser.add_argument("--arch", default="resnet50", choices=("resnet50", "resnet18"))
    parser.add_argument("--size", type=int, default=224, help="input side (px) of the untrained checkpoint")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores - 1)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1,
                        help="bare-stream-bare runs; the median run's figures are reported, with every ratio")
    parser.add_argument("--json", action="store_true", help="print only the result JSON (one line)")
    parser.add_argument("--out", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="kvasir-bench-predict-") as tmp_name:
        tmp = Path(tmp_name)
        ckpt = args.classifier or untrained_checkpoint(tmp / "untrained.pt", args.arch, args.size)
        images = list_images([args.frames]) if args.frames else write_frames(tmp / "frames", args.n)
        res = predict_throughput(ckpt, images, tmp / "predictions.jsonl", args.device, args.workers, args.batch,
                                 args.repeats)
    res.update(model=f"{args.arch} @ {args.size} px (untrained)" if not args.classifier else str(args.classifier),
               load_avg_1m=round(os.getloadavg()[0], 2), cpu_count=os.cpu_count())
    if args.out:
        atomic_write_json(args.out, {"command": "python scripts/bench_predict.py " + " ".join(argv or sys.argv[1:]),
                                     "result": res}, keep_backup=True)
    if not args.json:
        print(f"stream {res['stream_img_s']} img/s, bare forward {res['bare_img_s']} img/s: ratio {res['ratio']}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
