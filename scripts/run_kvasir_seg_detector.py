"""Kvasir-SEG polyp detector: index the real data, split 800/80/120, train, score.

    python scripts/run_kvasir_seg_detector.py --out runs/det-kvasir-seg [key=value ...]
    python scripts/run_kvasir_seg_detector.py --out /tmp/smoke --smoke      # CPU: 48 images, 1 epoch, 128 px

The canonical file is written next to the run (``<out>.canonical/annotations.coco.json``,
file_names relative to the Kvasir-SEG folder, which stays where it is).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kvasir_ml.config import load_config
from kvasir_ml.data.sources import index_kvasir_seg
from kvasir_ml.detection.config import DetectorConfig
from kvasir_ml.detection.run import train_detector

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["data.max_images=48", "data.fractions=[0.6,0.2,0.2]", "train.epochs=1", "train.imgsz=128",
         "train.batch=8", "train.workers=0", "train.device=cpu", "train.cache=false", "train.plots=false",
         "train.warmup_epochs=0", "model.arch=yolov8n.yaml", "eval.n_overlays=4", "eval.batch=8",
         "tracking.log_model=false"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run folder (new)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "kvasir-seg"), help="Kvasir-SEG folder")
    parser.add_argument("--config", default=str(REPO / "configs" / "detector_kvasir_seg.yaml"))
    parser.add_argument("--smoke", action="store_true", help="tiny CPU smoke run (few images, 1 epoch)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    out = Path(args.out)
    index = index_kvasir_seg(args.data)
    canonical = out.with_name(out.name + ".canonical") / "annotations.coco.json"
    canonical.parent.mkdir(parents=True, exist_ok=True)
    index.dataset.save(canonical)
    print(f"indexed {len(index.dataset.images)} images, {len(index.dataset.annotations)} boxes, "
          f"{len(index.problems)} problems -> {canonical}")
    overrides = [f"data.canonical={canonical}", f"data.root={Path(args.data).resolve()}"]
    overrides += (SMOKE if args.smoke else []) + list(args.overrides)
    cfg = load_config(DetectorConfig, args.config, overrides)
    run_dir = train_detector(cfg, out)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(json.dumps({k: metrics["test"][k] for k in ("coco_ap", "coco_ap50", "coco_ap75", "ultralytics_map50",
                                                      "ultralytics_map50_95", "inference_img_s")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
