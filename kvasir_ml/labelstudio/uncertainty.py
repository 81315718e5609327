"""How sure the models are about a frame: the ``score`` of every prediction pushed to Label Studio.

``frame_confidence(entry)`` is 0 for a frame the models could not decide and 1 for one they
are sure about, so sorting Label Studio's data manager by *Prediction score*, ascending, puts
the frames that help the model most in front of the annotators (uncertainty sampling).

* Each image-level label contributes its **margin to its val-tuned threshold**, scaled to
  [0, 1] on its side of the threshold: ``(s - t) / (1 - t)`` above it, ``(t - s) / t`` below.
  0 = the score sits on the threshold (the decision could flip), 1 = score 0 or 1.
* Each predicted box contributes its **detector confidence** (boxes below the detector's
  stored ``predict_conf``, 0.25 by default, are not shown at all).
* The frame takes the **minimum** over its labels and boxes: one undecided label or one weak
  box makes the whole frame worth a look.

What it does not show: a missed finding with no box at all (the detector's sub-threshold
boxes are not kept), and calibration — scores are ranks within one model version, not
probabilities, so compare frames under the same ``model_version`` only.
"""

from __future__ import annotations

from typing import Any, Mapping

DEFAULT_THRESHOLD = 0.5  # for prediction files written before thresholds were recorded


def label_margin(score: float, threshold: float) -> float:
    """Distance of a label score from its threshold, scaled to [0, 1] on that side."""
    t = min(max(float(threshold), 1e-6), 1 - 1e-6)
    s = min(max(float(score), 0.0), 1.0)
    return (s - t) / (1 - t) if s >= t else (t - s) / t


def frame_confidence(entry: Mapping[str, Any]) -> float | None:
    """The frame's confidence in [0, 1] from one ``kvasir_ml.predict`` entry (see module doc).

    Args:
        entry: ``labels`` {label: score}, optional ``thresholds`` {label: threshold} (written
            by ``train.predict.classify_arrays``; missing ones count as 0.5), ``boxes`` [{score, ...}].

    Returns:
        The minimum over label margins and box scores, or None when the entry has neither
        (nothing to rank it by).
    """
    thresholds = entry.get("thresholds") or {}
    parts = [label_margin(s, thresholds.get(name, DEFAULT_THRESHOLD)) for name, s in (entry.get("labels") or {}).items()]
    parts += [float(box["score"]) for box in entry.get("boxes") or [] if box.get("score") is not None]
    return round(min(parts), 6) if parts else None
