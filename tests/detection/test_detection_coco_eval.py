"""pycocotools scoring: perfect = 1.0, shifted lower, empty and missing-class cases."""

from __future__ import annotations

import pytest

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.detection.detect import to_coco_results
from kvasir_ml.evaluation.detection import coco_evaluate


def _perfect(ds, shift_px: float = 0.0) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9,
             "bbox": [a["bbox"][0] + shift_px, a["bbox"][1] + shift_px, a["bbox"][2], a["bbox"][3]]}
            for a in ds.annotations]


def test_perfect_prediction_scores_one(box_dataset):
    ds = load_canonical(box_dataset)
    scores = coco_evaluate(ds, _perfect(ds))
    assert scores["coco_ap"] == pytest.approx(1.0)
    assert scores["coco_ap50"] == pytest.approx(1.0) and scores["coco_ap75"] == pytest.approx(1.0)
    assert scores["per_class_ap"] == {"polyp": pytest.approx(1.0), "resection-margin": pytest.approx(1.0)}
    assert scores["n_gt_boxes"] == len(ds.annotations) == scores["n_detections"]


def test_shifted_prediction_scores_lower(box_dataset):
    ds = load_canonical(box_dataset)
    perfect = coco_evaluate(ds, _perfect(ds))["coco_ap"]
    shifted = coco_evaluate(ds, _perfect(ds, shift_px=6.0))
    assert shifted["coco_ap"] < perfect
    assert shifted["coco_ap75"] < shifted["coco_ap50"] <= 1.0


def test_no_detections_and_class_without_ground_truth(box_dataset):
    ds = load_canonical(box_dataset)
    polyp_only = ds.subset([img["file_name"] for img in ds.images if img["labels"] == ["polyp"]])
    none = coco_evaluate(polyp_only, [])
    assert none["coco_ap"] == 0.0 and none["per_class_ap"] == {"polyp": 0.0, "resection-margin": None}
    scored = coco_evaluate(polyp_only, _perfect(polyp_only))
    assert scored["per_class_ap"]["resection-margin"] is None
    assert scored["coco_ap"] == pytest.approx(1.0)


def test_results_must_match_the_ground_truth_ids(box_dataset):
    ds = load_canonical(box_dataset)
    bad = _perfect(ds)[:1]
    bad[0]["image_id"] = 10_000
    with pytest.raises(ValueError, match="not in the ground truth"):
        coco_evaluate(ds, bad)


def test_to_coco_results_uses_canonical_ids(box_dataset):
    ds = load_canonical(box_dataset)
    dets = [[{"class": "resection-margin", "score": 0.5, "xywh_px": [1, 2, 3, 4]}], []]
    out = to_coco_results(dets, [ds.images[0]["id"], ds.images[1]["id"]], ds.categories)
    assert out == [{"image_id": ds.images[0]["id"], "category_id": 2, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}]
    with pytest.raises(ValueError, match="not a category"):
        to_coco_results([[{"class": "tumour", "score": 1.0, "xywh_px": [0, 0, 1, 1]}]], [1], ds.categories)
