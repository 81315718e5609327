"""Rank likely label errors from out-of-fold predictions with cleanlab.

Image labels: ``cleanlab.multilabel_classification.get_label_quality_scores`` gives each
image a label quality (low = likely wrong); ``cleanlab.filter.find_label_issues(...,
multi_label=True)`` flags the images it counts as issues (confident learning). Boxes:
``cleanlab.object_detection`` — its per-box subtype scores (``compute_overlooked_box_scores``
for predicted boxes nobody drew, ``compute_badloc_box_scores`` for drawn boxes no
prediction supports well, ``compute_swap_box_scores`` for drawn boxes of the wrong class)
and its image-level ``find_label_issues``.

Every suspect is one JSON object, and the list is sorted by ``score`` (1 - cleanlab's
quality, so 1 = most likely an error) with the most likely error first::

    {"file_name", "kind", "score", "given", "suggested", "flagged", ...}

``kind``: ``label`` (given = the image's labels, suggested = the labels the model gives
probability >= 0.5), ``box-missing`` (given None, suggested the predicted box),
``box-spurious`` (given the drawn box, suggested None: no kept prediction overlaps it; scored
by ``spurious_score``, since cleanlab gives a box no prediction touches a perfect badloc score),
``box-placement`` (given the drawn box, suggested the best-overlapping prediction),
``box-class`` (given the drawn box, suggested the same place with the model's class).
``flagged``: cleanlab's own ``find_label_issues`` counts the image as an issue.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Sequence

import numpy as np

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.geometry import iou_xywh_px, xywh_px_to_xyxy_px
from kvasir_ml.review.oof import Detection, OofPredictions

log = logging.getLogger(__name__)

KINDS = ("label", "box-missing", "box-spurious", "box-placement", "box-class")
SUGGEST_THRESHOLD = 0.5  # a label is suggested when its out-of-fold probability reaches this
# Predictions under this score are ignored for boxes (the scoring runs keep everything down
# to 0.001 for COCO AP; cleanlab would only count them as weak evidence of a missing box).
MIN_BOX_SCORE = 0.05
SPURIOUS_IOU = 0.1  # a drawn box that overlaps no kept prediction this much is "spurious"
# cleanlab's multiclass ranking of the class view (docs/review.md compares the methods)
CLASS_VIEW_METHOD = "self_confidence"


def label_suspects(file_names: Sequence[str], given: Sequence[Sequence[str]], label_names: Sequence[str],
                   label_scores: np.ndarray) -> list[dict[str, Any]]:
    """One ``label`` suspect per image, scored by cleanlab's multi-label quality.

    Args:
        file_names: images, in the rows' order.
        given: each image's given labels.
        label_names: the columns of ``label_scores``.
        label_scores: (N, L) out-of-fold probabilities.

    Returns:
        Suspects (unsorted). Only labels that some image carries are scored (cleanlab needs
        examples of a class); an image whose labels are all outside them gets score 0.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.multilabel_classification import get_label_quality_scores

    scores = np.asarray(label_scores, dtype=np.float64)
    if scores.shape != (len(file_names), len(label_names)):
        raise ValueError(f"label_scores has shape {scores.shape}, expected ({len(file_names)}, {len(label_names)})")
    present = sorted({label_names.index(lab) for labs in given for lab in labs if lab in label_names})
    col = {j: c for c, j in enumerate(present)}
    labels = [sorted(col[label_names.index(lab)] for lab in set(labs) if lab in label_names) for labs in given]
    probs = np.clip(scores[:, present], 1e-6, 1 - 1e-6)
    quality = get_label_quality_scores(labels, probs)
    with warnings.catch_warnings():  # it warns about classes with few examples: expected on small sets
        warnings.simplefilter("ignore")
        flagged = np.asarray(find_label_issues(labels, probs, multi_label=True), dtype=bool)
    out = []
    for i, name in enumerate(file_names):
        suggested = [lab for j, lab in enumerate(label_names) if scores[i, j] >= SUGGEST_THRESHOLD]
        given_i = [lab for lab in label_names if lab in set(given[i])]
        out.append({"file_name": name, "kind": "label", "score": round(float(1.0 - quality[i]), 6),
                    "given": given_i, "suggested": suggested, "flagged": bool(flagged[i]),
                    "label_scores": {lab: round(float(scores[i, j]), 4) for j, lab in enumerate(label_names)
                                     if lab in given_i or scores[i, j] >= 0.1}})
    return out


def class_view_suspects(ds: CanonicalDataset, file_names: Sequence[str], class_names: Sequence[str],
                        class_scores: np.ndarray, multilabel: Sequence[dict[str, Any]] | None = None,
                        method: str = CLASS_VIEW_METHOD) -> list[dict[str, Any]]:
    """One ``label`` suspect per image, scored by cleanlab's multiclass quality of its SOURCE class.

    A confusable class swap is a wrong source class (see ``review.features``): the score is
    1 - ``cleanlab.rank.get_label_quality_scores(given class, out-of-fold class probabilities,
    method)``; ``flagged`` is ``cleanlab.filter.find_label_issues`` on the same inputs. The
    suggested labels are the taxonomy label set of the most probable class plus the image's
    labels outside its given class's set (extra findings stay). With ``multilabel`` (the
    ``label_suspects`` of the same images) its score is kept as ``multilabel_score`` and its
    ``label_scores`` carried over.

    Returns:
        Suspects (unsorted), with ``given_class``, ``suggested_class`` and ``class_score``
        (the out-of-fold probability of the given class).
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from kvasir_ml.taxonomy import load_taxonomy

    probs = np.asarray(class_scores, dtype=np.float64)
    if probs.shape != (len(file_names), len(class_names)):
        raise ValueError(f"class_scores has shape {probs.shape}, expected ({len(file_names)}, {len(class_names)})")
    by_file, taxonomy = ds.image_by_file, load_taxonomy()
    y = np.array([list(class_names).index(by_file[f]["source_class"]) for f in file_names])
    quality = get_label_quality_scores(y, probs, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = np.asarray(find_label_issues(y, probs), dtype=bool)
    ml = {s["file_name"]: s for s in multilabel or []}
    out = []
    for i, name in enumerate(file_names):
        img, best = by_file[name], class_names[int(np.argmax(probs[i]))]
        given = list(img.get("labels") or [])
        try:
            own = set(taxonomy.labels_for(img["source"], img["source_class"]))
            suggested = sorted(set(taxonomy.labels_for(img["source"], best)) | (set(given) - own),
                               key=taxonomy.label_names.index)
        except (KeyError, ValueError):  # a source or class the taxonomy does not know: the labels stay
            suggested = given
        s = {"file_name": name, "kind": "label", "score": round(float(1.0 - quality[i]), 6), "given": given,
             "suggested": suggested, "flagged": bool(flagged[i]), "given_class": img["source_class"],
             "suggested_class": best, "class_score": round(float(probs[i, y[i]]), 4)}
        if name in ml:
            s.update(multilabel_score=ml[name]["score"], label_scores=ml[name]["label_scores"])
        out.append(s)
    return out


def _cleanlab_inputs(ds: CanonicalDataset, file_names: Sequence[str], detections: dict[str, list[Detection]],
                     class_names: Sequence[str]) -> tuple[list[dict], list[list[np.ndarray]], list[list], list[list]]:
    """cleanlab's formats (xyxy pixels, class index) plus the boxes behind each row."""
    by_file, boxes = ds.image_by_file, ds.boxes_by_image()
    labels, preds, given_rows, pred_rows = [], [], [], []
    for name in file_names:
        drawn = [(ds.category_name(a["category_id"]), list(a["bbox"])) for a in boxes.get(by_file[name]["id"], [])]
        drawn = [(c, b) for c, b in drawn if c in class_names]
        labels.append({"bboxes": np.array([xywh_px_to_xyxy_px(b) for _, b in drawn], dtype=np.float64).reshape(-1, 4),
                       "labels": np.array([class_names.index(c) for c, _ in drawn], dtype=np.int64)})
        kept = [d for d in detections.get(name, []) if d["score"] >= MIN_BOX_SCORE and d["class"] in class_names]
        per_class, rows = [], []
        for k, cls in enumerate(class_names):  # cleanlab flattens predictions class by class
            mine = [d for d in kept if d["class"] == cls]
            per_class.append(np.array([[*xywh_px_to_xyxy_px(d["xywh_px"]), d["score"]] for d in mine],
                                      dtype=np.float64).reshape(-1, 5))
            rows += mine
        preds.append(per_class)
        given_rows.append(drawn)
        pred_rows.append(rows)
    return labels, preds, given_rows, pred_rows


def _box(cls: str, xywh: Sequence[float], score: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"class": cls, "xywh_px": [round(float(v), 2) for v in xywh]}
    if score is not None:
        out["score"] = round(float(score), 4)
    return out


def box_suspects(ds: CanonicalDataset, file_names: Sequence[str], detections: dict[str, list[Detection]],
                 class_names: Sequence[str], high_probability_threshold: float | None = None,
                 low_probability_threshold: float | None = None) -> list[dict[str, Any]]:
    """Box suspects from cleanlab's per-box subtype scores (see the module docstring).

    Args:
        ds: the canonical dataset (the given boxes).
        file_names: the images to check.
        detections: out-of-fold boxes per image.
        class_names: the detector's box classes.
        high_probability_threshold, low_probability_threshold: cleanlab's thresholds for
            a prediction to count as evidence of a missing/swapped box and for supporting a
            drawn box's placement; None = ``typical_hit_score`` (and at most 0.5 for the low
            one), or cleanlab's defaults (0.95, 0.5) when the detector finds no drawn box.

    Returns:
        Suspects (unsorted): one per drawn box (placement, spurious or class, whichever
        subtype scores worse) and one per predicted box cleanlab scores as overlooked.
    """
    from cleanlab.object_detection import filter as od_filter
    from cleanlab.object_detection import rank as od_rank

    labels, preds, given_rows, pred_rows = _cleanlab_inputs(ds, file_names, detections, class_names)
    typical = typical_hit_score(given_rows, pred_rows)
    if high_probability_threshold is None and typical is not None:
        high_probability_threshold = typical
    if low_probability_threshold is None and typical is not None:
        low_probability_threshold = min(0.5, typical)
    log.info("box suspects: cleanlab thresholds high %s, low %s (typical score of a found box %s)",
             high_probability_threshold, low_probability_threshold, typical)
    hi = {} if high_probability_threshold is None else {"high_probability_threshold": high_probability_threshold}
    lo = {} if low_probability_threshold is None else {"low_probability_threshold": low_probability_threshold}
    overlooked = od_rank.compute_overlooked_box_scores(labels=labels, predictions=preds, **hi)
    badloc = od_rank.compute_badloc_box_scores(labels=labels, predictions=preds, **lo)
    swap = od_rank.compute_swap_box_scores(labels=labels, predictions=preds, **hi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = np.asarray(od_filter.find_label_issues(labels, preds), dtype=bool)
    out = []
    for i, name in enumerate(file_names):
        for j, (cls, box) in enumerate(given_rows[i]):
            ious = [iou_xywh_px(box, d["xywh_px"]) for d in pred_rows[i]]
            best = int(np.argmax(ious)) if ious else None
            bad, swp = float(badloc[i][j]), float(swap[i][j])
            if swp < bad and pred_rows[i]:
                kind, suggested, score = "box-class", _box(_other_class(box, pred_rows[i], cls), box), 1 - swp
            elif best is None or ious[best] < SPURIOUS_IOU:
                kind, suggested, score = "box-spurious", None, spurious_score(box, cls, detections.get(name, []))
            else:
                d = pred_rows[i][best]
                kind, suggested, score = "box-placement", _box(d["class"], d["xywh_px"], d["score"]), 1 - bad
            out.append({"file_name": name, "kind": kind, "score": round(score, 6), "given": _box(cls, box),
                        "suggested": suggested, "flagged": bool(flagged[i])})
        for d, q in zip(pred_rows[i], overlooked[i]):
            if np.isfinite(q):  # NaN: the prediction matches a drawn box (not an overlooked object)
                out.append({"file_name": name, "kind": "box-missing", "score": round(float(1 - q), 6),
                            "given": None, "suggested": _box(d["class"], d["xywh_px"], d["score"]),
                            "flagged": bool(flagged[i])})
    return out


def typical_hit_score(given_rows: Sequence[Sequence[tuple[str, Sequence[float]]]],
                      pred_rows: Sequence[Sequence[Detection]]) -> float | None:
    """The median score of the detector's best same-class prediction on each drawn box it finds
    (IoU >= 0.5), clipped to [0.05, 0.95]; None when it finds none.

    cleanlab counts a prediction as evidence of a missing or swapped box only above its high
    probability threshold (default 0.95), which a small detector trained on a few hundred frames
    rarely reaches: its found boxes score ~0.3-0.7. Taking the threshold from the boxes the
    detector does find (no knowledge of which labels are wrong) adapts it to the model.
    """
    found = []
    for given, preds in zip(given_rows, pred_rows):
        for cls, box in given:
            best = max((d["score"] for d in preds if d["class"] == cls and iou_xywh_px(box, d["xywh_px"]) >= 0.5),
                       default=None)
            if best is not None:
                found.append(best)
    return round(float(np.clip(np.median(found), 0.05, 0.95)), 4) if found else None


def spurious_score(box: Sequence[float], cls: str, detections: Sequence[Detection]) -> float:
    """How likely a drawn box marks nothing: 1 - the best score of any same-class detection
    overlapping it (IoU >= ``SPURIOUS_IOU``), over ALL out-of-fold detections (down to the
    scoring threshold). cleanlab's subtype scores leave this case out: a drawn box that no
    prediction touches gets badloc 1.0 (no evidence against it)."""
    support = [d["score"] for d in detections if d["class"] == cls and iou_xywh_px(box, d["xywh_px"]) >= SPURIOUS_IOU]
    return round(1.0 - max(support, default=0.0), 6)


def _other_class(box: Sequence[float], preds: list[Detection], cls: str) -> str:
    """The class of the best-overlapping prediction of another class (the swap suggestion)."""
    others = [(iou_xywh_px(box, d["xywh_px"]) * d["score"], d["class"]) for d in preds if d["class"] != cls]
    return max(others)[1] if others else cls


def rank_suspects(ds: CanonicalDataset, oof: OofPredictions, **box_options: Any) -> list[dict[str, Any]]:
    """All suspects of a dataset, most likely error first.

    Args:
        ds: the canonical dataset whose labels are checked (``oof.file_names`` must be its images).
        oof: out-of-fold predictions (label scores, class scores and/or detections); with
            class scores the label suspects are ranked by the class view
            (``class_view_suspects``), else by the multi-label view (``label_suspects``).
        box_options: thresholds passed to ``box_suspects``.

    Returns:
        Suspects sorted by score (descending; ties by file name and kind).
    """
    by_file = ds.image_by_file
    unknown = [f for f in oof.file_names if f not in by_file]
    if unknown:
        raise ValueError(f"{len(unknown)} predicted images are not in the canonical file, e.g. {unknown[:3]}")
    out: list[dict[str, Any]] = []
    multilabel = None
    if oof.label_scores is not None:
        given = [by_file[f].get("labels") or [] for f in oof.file_names]
        multilabel = label_suspects(oof.file_names, given, oof.label_names or [], oof.label_scores)
    if oof.class_scores is not None:  # the class view ranks the labels; the multi-label score rides along
        out += class_view_suspects(ds, oof.file_names, oof.class_names or [], oof.class_scores, multilabel)
    elif multilabel is not None:
        out += multilabel
    if oof.detections is not None:
        class_names = [c["name"] for c in sorted(ds.categories, key=lambda c: c["id"])]
        out += box_suspects(ds, oof.file_names, oof.detections, class_names, **box_options)
    out.sort(key=lambda s: (-s["score"], s["file_name"], KINDS.index(s["kind"])))
    log.info("%d suspects (%d flagged by cleanlab)", len(out), sum(s["flagged"] for s in out))
    return out
