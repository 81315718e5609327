"""Score a trained detector on one split: pycocotools AP next to ultralytics' own mAP.

Both numbers come from the same checkpoint and the same images. Why they differ is
explained in ``kvasir_ml.evaluation.detection``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.detection.config import DetectorConfig
from kvasir_ml.detection.yolo_dataset import YoloExport, unique_stem
from kvasir_ml.detection.overlay import draw_overlay
from kvasir_ml.detection.detect import run_detector, save_coco_results, to_coco_results
from kvasir_ml.detection.ultralytics_env import no_platform_key
from kvasir_ml.detection.yolo import load_yolo, ultralytics_device
from kvasir_ml.evaluation.detection import coco_evaluate
from kvasir_ml.tracking import Tracker


def ultralytics_val(model, export: YoloExport, split: str, cfg: DetectorConfig, run_dir: Path) -> dict[str, float]:
    """ultralytics' own mAP50 / mAP50-95 (``model.val``) on the exported split."""
    device = ultralytics_device(cfg.train.device)
    with no_platform_key():
        res = model.val(
            data=str(export.data_yaml), split=split, imgsz=cfg.train.imgsz, batch=cfg.eval.batch, device=device,
            conf=cfg.eval.conf, iou=cfg.eval.iou, max_det=cfg.eval.max_det, plots=False, verbose=False,
            project=str((run_dir / "ultralytics").resolve()), name=f"val_{split}", exist_ok=True,
        )
    return {"ultralytics_map50": float(res.box.map50), "ultralytics_map50_95": float(res.box.map)}


def score_split(
    ckpt: Path, ds: CanonicalDataset, export: YoloExport, split: str, cfg: DetectorConfig, run_dir: Path,
    tracker: Tracker,
) -> dict[str, Any]:
    """Predict on a split, write COCO results, score with pycocotools and ultralytics.

    Returns:
        ``coco_ap``, ``coco_ap50``, ``coco_ap75``, ``per_class_ap``, ``ultralytics_map50``,
        ``ultralytics_map50_95``, counts and inference speed; None-valued scores when the
        split is empty.
    """
    names = export.file_names.get(split, [])
    if not names:
        return {"coco_ap": None, "coco_ap50": None, "coco_ap75": None, "ultralytics_map50": None,
                "ultralytics_map50_95": None, "per_class_ap": {}, "per_class_ap50": {}, "n_images": 0}
    gt = ds.subset(names)
    by_file = gt.image_by_file
    # save_checkpoints wrote it in this run from a safely unpickled checkpoint: no second check
    model = load_yolo(ckpt, trust=True)
    # The original frames: prediction masks them itself, exactly as `kvasir-ml predict` does.
    paths = [export.data_root / f for f in names]
    t0 = time.perf_counter()
    detections = run_detector(model, paths, device=cfg.train.device, conf=cfg.eval.conf, iou=cfg.eval.iou,
                              max_det=cfg.eval.max_det, batch=cfg.eval.batch)
    infer_s = time.perf_counter() - t0
    results = to_coco_results(detections, [by_file[f]["id"] for f in names], gt.categories)
    save_coco_results(run_dir / "predictions" / f"{split}.coco_results.json", results)
    scores = coco_evaluate(gt, results, max_dets=cfg.eval.max_det)
    scores.update(ultralytics_val(model, export, split, cfg, run_dir))
    scores["inference_img_s"] = len(names) / infer_s if infer_s > 0 else None
    if split == "test":
        _overlays(gt, names, paths, detections, cfg, run_dir, tracker)
    for key in ("coco_ap", "coco_ap50", "coco_ap75", "ultralytics_map50", "ultralytics_map50_95"):
        if scores.get(key) is not None:
            tracker.log({f"{split}/{key}": scores[key]})
    return scores


def _overlays(gt: CanonicalDataset, names, paths, detections, cfg: DetectorConfig, run_dir: Path,
              tracker: Tracker) -> None:
    boxes = gt.boxes_by_image()
    by_file = gt.image_by_file
    for file_name, path, dets in list(zip(names, paths, detections))[: cfg.eval.n_overlays]:
        gt_boxes = [{"class": gt.category_name(a["category_id"]), "xywh_px": a["bbox"]}
                    for a in boxes.get(by_file[file_name]["id"], [])]
        out = draw_overlay(path, gt_boxes, dets, run_dir / "plots" / f"test_{unique_stem(file_name)}.png",
                           min_score=cfg.eval.predict_conf)
        tracker.image(f"test/overlay/{unique_stem(file_name)}", out, caption=f"{file_name}: green GT, red prediction")
