"""Inter-annotator agreement and majority adjudication for the verification workflow.

Pure functions over plain data (no Label Studio here):

* ``label_agreement``: one yes/no question answered by several annotators on many images.
  Exactly two distinct annotators: Cohen's kappa (``sklearn.metrics.cohen_kappa_score``) on
  the images both answered. More: Krippendorff's alpha, nominal (the ``krippendorff``
  package), which takes any set of annotators per image and missing answers. Both are
  undefined (None) when nobody ever varies (every answer "no"): chance agreement is then 1;
  the raw agreement is reported beside them.
* ``match_boxes`` / ``box_agreement``: boxes of one class matched one-to-one by IoU
  (Hungarian assignment; a pair counts when IoU >= the threshold).
* ``majority`` / ``consensus_boxes``: what most annotators said; a tie is None (to adjudicate).
"""

from __future__ import annotations

import math
import warnings
from itertools import combinations
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from kvasir_ml.geometry import iou_xywh_px

Box = tuple[float, float, float, float]
DEFAULT_IOU = 0.5  # two boxes of one class mark the same object from this IoU on (COCO's AP50 rule)


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def label_agreement(answers: Mapping[Hashable, Mapping[Hashable, bool]]) -> dict[str, Any]:
    """Agreement on one yes/no question.

    Args:
        answers: ``{image: {annotator: True/False}}``; an annotator missing from an image
            did not answer it there.

    Returns:
        ``{"method": "cohen_kappa" | "krippendorff_alpha" | None, "value": float | None,
        "n_images": images with >= 2 answers, "n_annotators", "raw_agreement": share of those
        images where every answer is the same, "n_yes": yes answers}``.
    """
    rated = {img: dict(a) for img, a in answers.items() if len(a) >= 2}
    annotators = sorted({who for a in rated.values() for who in a}, key=str)
    out: dict[str, Any] = {"method": None, "value": None, "n_images": len(rated), "n_annotators": len(annotators),
                           "raw_agreement": None, "n_yes": int(sum(v for a in answers.values() for v in a.values()))}
    if not rated:
        return out
    out["raw_agreement"] = float(np.mean([len(set(a.values())) == 1 for a in rated.values()]))
    from sklearn.exceptions import UndefinedMetricWarning

    with warnings.catch_warnings():  # a question nobody varies on: kappa/alpha are 0/0 (reported as None)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        if len(annotators) == 2:
            from sklearn.metrics import cohen_kappa_score

            a, b = annotators
            pairs = [(int(x[a]), int(x[b])) for x in rated.values()]
            out["method"] = "cohen_kappa"
            out["value"] = _finite_or_none(cohen_kappa_score(*zip(*pairs), labels=[0, 1]))
        else:
            import krippendorff

            matrix = np.full((len(annotators), len(rated)), np.nan)
            for col, given in enumerate(rated.values()):
                for row, who in enumerate(annotators):
                    if who in given:
                        matrix[row, col] = float(given[who])
            out["method"] = "krippendorff_alpha"
            out["value"] = _finite_or_none(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal",
                                                              value_domain=[0.0, 1.0]))
    return out


def majority(votes: Sequence[bool]) -> bool | None:
    """True/False when more than half of the votes say so; None on a tie or no votes."""
    yes = sum(bool(v) for v in votes)
    no = len(votes) - yes
    return None if yes == no else yes > no


# ---- boxes ------------------------------------------------------------------------------------
def match_boxes(a: Sequence[Box], b: Sequence[Box], iou_threshold: float = DEFAULT_IOU) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(index in a, index in b, IoU)`` with IoU >= threshold, chosen to
    maximise the total IoU (Hungarian assignment)."""
    if not a or not b:
        return []
    from scipy.optimize import linear_sum_assignment

    iou = np.array([[iou_xywh_px(x, y) for y in b] for x in a])
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] >= iou_threshold]


def box_agreement(per_image: Mapping[Hashable, Mapping[Hashable, Sequence[Box]]],
                  iou_threshold: float = DEFAULT_IOU) -> dict[str, Any]:
    """Agreement on the boxes of one class, pooled over annotator pairs and images.

    Args:
        per_image: ``{image: {annotator: [box xywh px, ...]}}`` (an empty list: "no box").

    Returns:
        ``{"f1": 2 matched / (boxes of both), "mean_iou": of the matched pairs, "n_pairs":
        annotator pairs compared, "n_boxes", "n_matched", "iou_threshold"}``; f1 is None when
        no pair drew any box.
    """
    matched, total, ious, pairs = 0, 0, [], 0
    for by_who in per_image.values():
        for x, y in combinations(sorted(by_who, key=str), 2):
            hits = match_boxes(by_who[x], by_who[y], iou_threshold)
            pairs += 1
            matched += len(hits)
            total += len(by_who[x]) + len(by_who[y])
            ious += [h[2] for h in hits]
    return {"f1": 2 * matched / total if total else None, "mean_iou": float(np.mean(ious)) if ious else None,
            "n_pairs": pairs, "n_boxes": total, "n_matched": matched, "iou_threshold": iou_threshold}


def consensus_boxes(by_who: Mapping[Hashable, Sequence[Box]],
                    iou_threshold: float = DEFAULT_IOU) -> tuple[list[Box], int]:
    """Boxes that more than half of the annotators drew (clustered by IoU with the cluster's
    mean box, at most one box per annotator in a cluster), each the mean of its cluster.

    Returns:
        ``(consensus boxes, number of tied clusters)``: a cluster drawn by exactly half of the
        annotators is a tie (to adjudicate); fewer than half is a majority "no box".
    """
    n = len(by_who)
    clusters: list[dict[str, Any]] = []
    for who in sorted(by_who, key=str):
        free = list(range(len(clusters)))
        for box in by_who[who]:
            best, best_iou = None, iou_threshold
            for k in free:
                iou = iou_xywh_px(clusters[k]["mean"], box)
                if iou >= best_iou:
                    best, best_iou = k, iou
            if best is None:
                clusters.append({"boxes": [box], "mean": tuple(box)})
            else:
                free.remove(best)
                members = clusters[best]["boxes"] + [box]
                clusters[best] = {"boxes": members, "mean": tuple(float(v) for v in np.mean(members, axis=0))}
    kept = [c["mean"] for c in clusters if 2 * len(c["boxes"]) > n]
    ties = sum(1 for c in clusters if 2 * len(c["boxes"]) == n)
    return kept, ties
