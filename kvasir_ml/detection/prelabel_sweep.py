"""How many boxes a detector pre-fills per frame at each confidence threshold, and how many are right.

Used to choose the pre-annotation defaults (``--conf``, ``--max-boxes`` of ``kvasir-ml ls push``,
``ls backend`` and ``loop``; ``scripts/bench_prelabel_conf.py``): a pre-filled box an annotator
must delete costs about as much as one they must draw, so the threshold should keep the
boxes per frame near the true count while keeping most true boxes.
"""

from __future__ import annotations

import statistics
from typing import Any, Sequence

from kvasir_ml.geometry import iou_xywh_px

Box = tuple[str, Sequence[float]]  # (class name, xywh_px)


def match_counts(pred: Sequence[Box], truth: Sequence[Box], iou_min: float = 0.5) -> int:
    """True positives: predictions (in the given order, best first) matched greedily to an
    unmatched true box of the same class with IoU >= ``iou_min``."""
    left = list(truth)
    hits = 0
    for cls, box in pred:
        best = max((t for t in left if t[0] == cls), key=lambda t: iou_xywh_px(box, t[1]), default=None)
        if best is not None and iou_xywh_px(box, best[1]) >= iou_min:
            left.remove(best)
            hits += 1
    return hits


def conf_sweep(detections: Sequence[Sequence[dict[str, Any]]], truth: Sequence[Sequence[Box]],
               confs: Sequence[float], max_boxes: Sequence[int]) -> list[dict[str, Any]]:
    """Boxes per frame, precision and recall (IoU 0.5) for each (conf, max_boxes) pair.

    Args:
        detections: per frame, ``detect_arrays`` output at a low threshold (sorted by score).
        truth: per frame, the true boxes.
        confs, max_boxes: the thresholds and per-frame caps to evaluate.

    Returns:
        One row per pair: ``conf``, ``max_boxes``, ``boxes_per_frame`` (mean), ``p90_boxes``,
        ``frames_without_box``, ``precision``, ``recall``, ``f1``.
    """
    n_true = sum(len(t) for t in truth)
    rows = []
    for conf in confs:
        for cap in max_boxes:
            kept = [[(d["class"], d["xywh_px"]) for d in dets if d["score"] >= conf][:cap] for dets in detections]
            n_pred = sum(map(len, kept))
            tp = sum(match_counts(k, t) for k, t in zip(kept, truth))
            p = tp / n_pred if n_pred else 0.0
            r = tp / n_true if n_true else 0.0
            counts = sorted(map(len, kept))
            rows.append({"conf": conf, "max_boxes": cap, "boxes_per_frame": round(statistics.fmean(counts), 3),
                         "p90_boxes": counts[int(0.9 * (len(counts) - 1))],
                         "frames_without_box": sum(1 for c in counts if c == 0),
                         "precision": round(p, 3), "recall": round(r, 3),
                         "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0})
    return rows
