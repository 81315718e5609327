"""How sure the models are about a frame: the ``score`` of every prediction pushed to Label Studio.

``frame_confidence(entry)`` is 0 for a frame the models could not decide and 1 for one they
are sure about, so sorting Label Studio's data manager by *Prediction score*, ascending, puts
the frames that help the model most in front of the annotators (uncertainty sampling).

* Each image-level label contributes its **margin to its val-tuned threshold**, scaled to
  [0, 1] on its side of the threshold: ``(s - t) / (1 - t)`` above it, ``(t - s) / t`` below.
  0 = the score sits on the threshold (the decision could flip), 1 = score 0 or 1.
* Each predicted box contributes its **detector confidence** (boxes below ``--conf``,
  ``PRELABEL_CONF``, are not shown at all; at most ``--max-boxes`` per frame, the best first).
* The frame takes the **minimum** over its labels and boxes: one undecided label or one weak
  box makes the whole frame worth a look.

What it does not show: a missed finding with no box at all (the detector's sub-threshold
boxes are not kept), and calibration — scores are ranks within one model version, not
probabilities, so compare frames under the same ``model_version`` only.
"""

from __future__ import annotations

from typing import Any, Mapping

DEFAULT_THRESHOLD = 0.5  # for prediction files written before thresholds were recorded

# Pre-annotation boxes (push, ML backend, loop), chosen with scripts/bench_prelabel_conf.py
# (docs/labelstudio.md, "Pre-annotation boxes"): on a tiny YOLOv8n the checkpoint's own 0.25 kept
# 0.03 boxes per frame (recall 0.05), 0.02 kept 1.8 (p90 5); 0.05 with at most 3 per frame had the
# best F1 (0.28; 0.82 boxes per frame for 0.49 true ones).
PRELABEL_CONF = 0.05
PRELABEL_MAX_BOXES = 3


def label_margin(score: float, threshold: float) -> float:
    """Distance of a label score from its threshold, scaled to [0, 1] on that side."""
    t = min(max(float(threshold), 1e-6), 1 - 1e-6)
    s = min(max(float(score), 0.0), 1.0)
    return (s - t) / (1 - t) if s >= t else (t - s) / t


def frame_confidence(entry: Mapping[str, Any]) -> float | None:
    """The frame's confidence in [0, 1] from one ``kvasir_ml.inference.combined`` entry (see module doc).

    Args:
        entry: ``labels`` {label: score}, optional ``thresholds`` {label: threshold} (written
            by ``train.classify.classify_arrays``; missing ones count as 0.5), ``boxes`` [{score, ...}].

    Returns:
        The minimum over label margins and box scores, or None when the entry has neither
        (nothing to rank it by).
    """
    thresholds = entry.get("thresholds") or {}
    parts = [label_margin(s, thresholds.get(name, DEFAULT_THRESHOLD)) for name, s in (entry.get("labels") or {}).items()]
    parts += [float(box["score"]) for box in entry.get("boxes") or [] if box.get("score") is not None]
    return round(min(parts), 6) if parts else None


# ---- why a frame is uncertain: what annotators see --------------------------------------
# Task data keys (shown as data-manager columns; the labeling page shows them above the image).
CONFIDENCE_KEY = "model_confidence"
FINDINGS_KEY = "model_findings"
MAX_FINDINGS_SHOWN = 5  # the least certain decisions; the rest are far from their thresholds


def finding_confidences(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every decision behind ``frame_confidence``, least certain first.

    Returns:
        ``{"finding", "score", "threshold" (labels only), "confidence"}`` per label
        (``finding`` = the label name) and per box (``finding`` = ``"<class> box"``); the
        frame's confidence is the first item's ``confidence``.
    """
    thresholds = entry.get("thresholds") or {}
    out = []
    for name, score in (entry.get("labels") or {}).items():
        t = float(thresholds.get(name, DEFAULT_THRESHOLD))
        out.append({"finding": name, "score": float(score), "threshold": t, "confidence": label_margin(score, t)})
    for box in entry.get("boxes") or []:
        if box.get("score") is not None:
            out.append({"finding": f"{box.get('class')} box", "score": float(box["score"]),
                        "confidence": float(box["score"])})
    return sorted(out, key=lambda f: f["confidence"])


def uncertainty_fields(entry: Mapping[str, Any], max_shown: int = MAX_FINDINGS_SHOWN) -> dict[str, Any]:
    """Task data fields that tell an annotator why the models are unsure of a frame.

    ``model_confidence`` is the frame's confidence rounded to 3 decimals (0 = undecided);
    ``model_findings`` names the least certain decisions, e.g.
    ``"polyp 0.47 (threshold 0.50) · polyp box 0.31 · dyed 0.91 (threshold 0.40)"``.
    Empty dict when the entry has nothing to rank.
    """
    parts = finding_confidences(entry)
    if not parts:
        return {}
    shown = [f"{p['finding']} {p['score']:.2f}" + (f" (threshold {p['threshold']:.2f})" if "threshold" in p else "")
             for p in parts[:max_shown]]
    more = f" · +{len(parts) - max_shown} more certain" if len(parts) > max_shown else ""
    return {CONFIDENCE_KEY: round(parts[0]["confidence"], 3), FINDINGS_KEY: " · ".join(shown) + more}
