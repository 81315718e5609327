"""Score a ``video predict`` frame log against a video's per-frame ground truth.

- Alerts: per label, flicker (decision changes per minute) and detection delay (frames and
  seconds from each ground-truth episode's start to the first frame with the decision on),
  for the raw frame-wise decision (``predicted_labels``) and the smoothed alert (``alerts``).
  The ground truth's own changes per minute are reported too: a perfect decision flickers
  that much.
- Tracks: standard MOT metrics (``motmetrics``: MOTA, MOTP, IDF1, ID switches, ...) of the
  tracked boxes against the ground-truth boxes and object ids, matched at IoU >= ``iou_min``.
  Only processed frames are scored (``--every`` skips the others on both sides).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kvasir_ml.io import read_json
from kvasir_ml.video.render import iter_frame_log
from kvasir_ml.video.smoothing import count_changes, detection_delays, flicker_per_min

MOT_METRICS = ("num_frames", "mota", "motp", "idf1", "idp", "idr", "num_switches", "num_false_positives",
               "num_misses", "mostly_tracked", "mostly_lost", "num_unique_objects")


def _iou_distance(gt_xywh: Sequence[Sequence[float]], pred_xywh: Sequence[Sequence[float]], iou_min: float) -> np.ndarray:
    """1 - IoU, NaN where IoU < iou_min (motmetrics' convention for 'cannot match').

    Written here because motmetrics 1.4.0's ``iou_matrix`` calls ``np.asfarray`` (gone in numpy 2)."""
    a = np.asarray(gt_xywh, float).reshape(-1, 4)
    b = np.asarray(pred_xywh, float).reshape(-1, 4)
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * \
        np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
    return np.where(iou >= iou_min, 1.0 - iou, np.nan)


def _pairs(frames_log: str | Path, truth: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    by_index = {f["index"]: f for f in truth["frames"]}
    pairs = []
    for entry in iter_frame_log(frames_log):
        gt = by_index.get(entry["frame"])
        if gt is None:
            raise ValueError(f"{frames_log}: frame {entry['frame']} is not in the ground truth "
                             f"({len(by_index)} frames): another video?")
        pairs.append((entry, gt))
    return pairs


def alert_metrics(pairs, fps_processed: float) -> dict[str, Any]:
    """Per label seen in the ground truth or alerted: raw vs smoothed flicker and delay."""
    if not pairs or "labels" not in pairs[0][0]:
        return {}
    duration_s = len(pairs) / fps_processed
    names = sorted({n for _, gt in pairs for n in gt["labels"]} | {n for e, _ in pairs for n in e.get("alerts", [])})
    out: dict[str, Any] = {}
    for name in names:
        truth = [name in gt["labels"] for _, gt in pairs]
        row: dict[str, Any] = {"truth_changes_per_min": round(flicker_per_min(truth, duration_s), 3),
                               "n_episodes": len(detection_delays(truth, truth))}
        for kind, key in (("raw", "predicted_labels"), ("smoothed", "alerts")):
            dec = [name in e.get(key, []) for e, _ in pairs]
            delays = detection_delays(truth, dec)
            hit = [d for d in delays if d is not None]
            tp = sum(1 for d, t in zip(dec, truth) if d and t)
            row[kind] = {
                "flicker_per_min": round(flicker_per_min(dec, duration_s), 3), "changes": count_changes(dec),
                "delay_frames": hit, "mean_delay_s": round(float(np.mean(hit)) / fps_processed, 3) if hit else None,
                "missed_episodes": len(delays) - len(hit),
                "frame_recall": round(tp / max(1, sum(truth)), 4),
                "frame_precision": round(tp / max(1, sum(dec)), 4),
            }
        out[name] = row
    return out


def mot_metrics(pairs, iou_min: float = 0.3) -> dict[str, Any] | None:
    """MOT metrics of the tracked boxes (None when the log has no boxes: no detector)."""
    import motmetrics as mm

    if not pairs or "boxes" not in pairs[0][0]:
        return None
    acc = mm.MOTAccumulator(auto_id=True)
    for entry, gt in pairs:
        preds = [b for b in entry["boxes"] if b.get("track_id") is not None]
        acc.update([b["id"] for b in gt["boxes"]], [b["track_id"] for b in preds],
                   _iou_distance([b["xywh_px"] for b in gt["boxes"]], [b["xywh_px"] for b in preds], iou_min))
    table = mm.metrics.create().compute(acc, metrics=list(MOT_METRICS), name="video")
    row = table.loc["video"]
    return {k: (None if np.isnan(float(row[k])) else round(float(row[k]), 4)) for k in MOT_METRICS} | {
        "iou_min": iou_min}


def evaluate_video(frames_log: str | Path, truth_json: str | Path, iou_min: float = 0.3) -> dict[str, Any]:
    """Alert flicker/delay (raw vs smoothed) and MOT metrics of a frame log against ground truth.

    Args:
        frames_log: ``frames.jsonl`` from ``predict_video``.
        truth_json: ``ground_truth.json`` from ``synthesize_video``.
        iou_min: IoU a tracked box needs to match a ground-truth box.

    Raises:
        ValueError: a frame of the log is not in the ground truth, or unreadable files.
    """
    truth = read_json(truth_json)
    pairs = _pairs(frames_log, truth)
    if len(pairs) >= 2:
        step = (pairs[-1][0]["frame"] - pairs[0][0]["frame"]) / (len(pairs) - 1)
    else:
        step = 1.0
    fps_processed = float(truth["fps"]) / max(step, 1.0)
    return {"frames_scored": len(pairs), "fps_processed": round(fps_processed, 3),
            "alerts": alert_metrics(pairs, fps_processed), "mot": mot_metrics(pairs, iou_min)}
