"""Pre-annotation defaults: boxes per frame, precision and recall against the detector's threshold.

Trains tiny YOLOv8n detectors on synthetic frames at a few training lengths (an undertrained
detector scores low: the checkpoint's own 0.25 then pre-fills nothing), predicts the val and
test frames once at conf 0.001, and sweeps ``--conf`` x ``--max-boxes`` as push/backend apply them.

    python scripts/bench_prelabel_conf.py [--n 96] [--epochs 1 2 10] \\
        [--json benchmarks/results/bench_prelabel_conf_cpu.json]

Last line: one JSON object {"detectors": {"<epochs>ep-<px>px": {"rows": [...], "true_boxes_per_frame"}},
"defaults": {"conf", "max_boxes"}} (the defaults push, backend and loop use now).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.4)
CAPS = (3, 5, 10, 100)


def _evaluate(det_ckpt: Path, canonical: Path, split_file: Path) -> dict:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.images import load_rgb
    from kvasir_ml.detection.detect import detect_arrays
    from kvasir_ml.detection.prelabel_sweep import conf_sweep
    from kvasir_ml.detection.yolo import load_yolo

    ds = load_canonical(canonical)
    split = json.loads(split_file.read_text())["splits"]
    names = set(split["val"]) | set(split["test"])
    cats = {c["id"]: c["name"] for c in ds.categories}
    boxes = ds.boxes_by_image()
    images = [img for img in ds.images if img["file_name"] in names]
    truth = [[(cats[b["category_id"]], b["bbox"]) for b in boxes.get(img["id"], [])] for img in images]
    rgbs = [load_rgb(canonical.parent / img["file_name"]) for img in images]
    dets = detect_arrays(load_yolo(det_ckpt), rgbs, device="cpu", conf=0.001, max_det=100)
    return {"n_frames": len(images), "true_boxes_per_frame": round(sum(map(len, truth)) / len(truth), 3),
            "rows": conf_sweep(dets, truth, CONFS, CAPS)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96, help="synthetic frames")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 10])
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    from kvasir_ml.config import load_config
    from kvasir_ml.data.synth import synthesize
    from kvasir_ml.detection.config import DetectorConfig
    from kvasir_ml.detection.run import train_detector
    from kvasir_ml.io import atomic_write_json

    work = Path(tempfile.mkdtemp(prefix="kvasir-bench-prelabel-"))
    canonical = synthesize(work / "root", n=args.n, seed=0)
    from kvasir_ml.labelstudio.uncertainty import PRELABEL_CONF, PRELABEL_MAX_BOXES

    out: dict = {"n_synthetic": args.n, "imgsz": args.imgsz, "detectors": {},
                 "defaults": {"conf": PRELABEL_CONF, "max_boxes": PRELABEL_MAX_BOXES}}
    for epochs in args.epochs:
        run = work / f"det{epochs}"
        t0 = time.perf_counter()
        cfg = load_config(DetectorConfig, REPO / "configs" / "detector_tiny.yaml", [
            f"data.canonical={canonical}", "tracking.mode=disabled", "eval.n_overlays=0",
            f"train.epochs={epochs}", f"train.imgsz={args.imgsz}"])
        train_detector(cfg, run)
        result = _evaluate(run / "checkpoints" / "best.pt", canonical, run / "split.json")
        result["train_s"] = round(time.perf_counter() - t0, 1)
        out["detectors"][f"{epochs}ep-{args.imgsz}px"] = result
        print(f"{epochs} epochs: {result['true_boxes_per_frame']} true boxes/frame", file=sys.stderr)
        for row in result["rows"]:
            print(f"  {row}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, out)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
