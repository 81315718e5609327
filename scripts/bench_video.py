"""`video predict` end to end against a bare forward of the same models on the same frames, one process.

    python scripts/bench_video.py --classifier runs/ml-tiny/checkpoints/best.pt \
        --detector runs/det-tiny/checkpoints/best.pt --json
    python scripts/bench_video.py --classifier C --detector D --video my.mp4 --device cuda --batch 32 --json

A synthetic video (kvasir_ml.video.synth; 600 frames, 24 s at 25 fps, unless --frames or --video)
is made. The last line is one JSON object: end-to-end fps and per-frame busy time per stage
(decode, inference, tracking, encode; stages overlap, so they add up to more than the wall
time), the bare forward's fps, their ratio (goal >= 0.8 on a CPU with the tiny models), and the
machine's load. Until 2026-12-06 the default was 120 frames, under a second at the tiny
models' speed: the ~0.1-0.2 s of start-up (forking the decode process, the first batch's
warm-up, filling the pipeline) then weighs ~10-15 % in the ratio.
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
from kvasir_ml.video.bench import bench_video
from kvasir_ml.video.synth import synthesize_video


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", required=True, help="classifier checkpoint")
    parser.add_argument("--detector", required=True, help="detector checkpoint")
    parser.add_argument("--video", help="a video file (default: a synthetic one)")
    parser.add_argument("--frames", type=int, default=600, help="synthetic video length (frames)")
    parser.add_argument("--width", type=int, default=256, help="synthetic frame width (px)")
    parser.add_argument("--height", type=int, default=224, help="synthetic frame height (px)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print only the result JSON (one line)")
    parser.add_argument("--out", help="also write the result to this JSON file (atomically)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="kvasir-bench-video-") as tmp_name:
        tmp = Path(tmp_name)
        video = args.video or synthesize_video(tmp / "synth", n_frames=args.frames,
                                               frame_size_px=(args.width, args.height)).parent / "video.mp4"
        res = bench_video(video, tmp / "pred", args.classifier, args.detector, args.device, args.batch)
    res.update(load_avg_1m=round(os.getloadavg()[0], 2), cpu_count=os.cpu_count())
    if args.out:
        atomic_write_json(args.out, {"command": "python scripts/bench_video.py " + " ".join(argv or sys.argv[1:]),
                                     "result": res}, keep_backup=True)
    if not args.json:
        print(f"end to end {res['end_to_end']['fps']} fps, bare forward {res['bare']['fps']} fps: ratio {res['ratio']}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
