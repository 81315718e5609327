"""Detection scores with pycocotools ``COCOeval`` (the numbers we report).

Why these differ from ultralytics' own ``metrics/mAP50(B)`` and ``mAP50-95(B)`` (both are
logged side by side in ``metrics.json``):

* **Integration.** COCOeval samples the precision envelope at 101 recall points
  (0, 0.01, ..., 1) and takes their *mean* (a step/rectangle rule, precision 0 beyond the
  last recall reached). ultralytics interpolates the same envelope at 101 points and
  integrates it with ``np.trapz`` (trapezoids), which is a little higher when recall stops
  short of 1 and differs at every step of the curve.
* **Matching.** Both match greedily in descending score (ultralytics 8.4's
  ``match_predictions``; older releases matched by IoU first), but COCOeval lets a
  detection matched to an ``iscrowd`` box be ignored and evaluates per category and area
  range; ultralytics evaluates one pooled IoU matrix per image.
* **Detections per image.** COCOeval counts at most ``maxDets=100`` per image (the top 100
  by score); ultralytics validates with ``max_det=300``.
* **Areas and crowds.** COCOeval reports area ranges (small/medium/large) and ignores
  ``iscrowd`` boxes; ultralytics has no area ranges and no crowd handling. Our "AP" is the
  ``area=all`` row.
* **Inputs.** ultralytics' val scores its letterboxed, rect-batched forward passes;
  our COCO results come from ``detection.detect.run_detector`` (one letterboxed image at a time, the same
  code path as ``kvasir-ml predict``), so NMS sees slightly different scores.
* **Class averaging.** Both average over classes with ground truth; a class with no
  ground-truth box in the split has no AP (``None`` here, rather than silently 0).

Typical gap: a few points of AP; pycocotools is the reference for reports.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

import numpy as np

from kvasir_ml.data.coco import CanonicalDataset

_STATS = {"coco_ap": 0, "coco_ap50": 1, "coco_ap75": 2, "coco_ap_small": 3, "coco_ap_medium": 4,
          "coco_ap_large": 5, "coco_ar100": 8}


def _coco_from(gt: CanonicalDataset):
    from pycocotools.coco import COCO

    raw = gt.to_dict()
    anns = []
    for ann in raw["annotations"]:
        ann = dict(ann)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        ann.setdefault("iscrowd", 0)
        anns.append(ann)
    coco = COCO()
    coco.dataset = {**raw, "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_evaluate(gt: CanonicalDataset, results: Sequence[dict[str, Any]], max_dets: int = 100) -> dict[str, Any]:
    """Score COCO-format detections against a canonical file with pycocotools.

    Args:
        gt: the ground truth (e.g. the test subset of the canonical file); every image in it
            counts, with or without boxes.
        results: ``[{"image_id", "category_id", "bbox": [x, y, w, h] px, "score"}]`` with ids
            matching ``gt``.
        max_dets: detections per image that count (COCO's standard is 100).

    Returns:
        ``coco_ap`` (AP@[.5:.95]), ``coco_ap50``, ``coco_ap75``, ``coco_ap_small/medium/large``,
        ``coco_ar100``, ``per_class_ap`` {class: AP@[.5:.95] or None without ground truth},
        ``per_class_ap50``, and counts. Metrics without ground truth are None.

    Raises:
        ValueError: a result refers to an image or category not in ``gt``.
    """
    from pycocotools.cocoeval import COCOeval

    image_ids = {img["id"] for img in gt.images}
    cat_ids = {c["id"] for c in gt.categories}
    for r in results:
        if r["image_id"] not in image_ids or r["category_id"] not in cat_ids:
            raise ValueError(f"detection {r} refers to an image or category that is not in the ground truth")
    counts = {"n_images": len(gt.images), "n_gt_boxes": len(gt.annotations), "n_detections": len(results)}
    names = {c["id"]: c["name"] for c in gt.categories}
    if not gt.annotations:
        return {**{k: None for k in _STATS}, "per_class_ap": {n: None for n in names.values()},
                "per_class_ap50": {n: None for n in names.values()}, **counts}
    if not results:  # pycocotools cannot load an empty result list; nothing found = AP 0
        zero = {k: 0.0 for k in _STATS}
        present = {a["category_id"] for a in gt.annotations}
        per = {names[c]: (0.0 if c in present else None) for c in names}
        return {**zero, "per_class_ap": per, "per_class_ap50": dict(per), **counts}
    coco_gt = _coco_from(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = sorted(image_ids)
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out: dict[str, Any] = {k: _none_if_negative(ev.stats[i]) for k, i in _STATS.items()}
    # precision: [T iou thresholds, R recall points, K categories, A area ranges, M maxDets]
    precision = ev.eval["precision"]
    per_class, per_class50 = {}, {}
    for k, cat_id in enumerate(ev.params.catIds):
        per_class[names[cat_id]] = _mean_valid(precision[:, :, k, 0, -1])
        per_class50[names[cat_id]] = _mean_valid(precision[0, :, k, 0, -1])
    out.update(per_class_ap=per_class, per_class_ap50=per_class50, **counts)
    return out


def _mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def _none_if_negative(value: float) -> float | None:
    return None if value < 0 else float(value)
