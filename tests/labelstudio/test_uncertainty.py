"""The prediction score ranks uncertain frames first (ascending sort in the data manager)."""

from __future__ import annotations

import pytest

from kvasir_ml.labelstudio.convert import prediction_from_combined
from kvasir_ml.labelstudio.uncertainty import frame_confidence, label_margin
from kvasir_ml.taxonomy import load_taxonomy


def test_label_margin_is_zero_on_the_threshold_and_one_at_the_extremes():
    assert label_margin(0.3, 0.3) == 0.0
    assert label_margin(1.0, 0.3) == pytest.approx(1.0) and label_margin(0.0, 0.3) == pytest.approx(1.0)
    assert label_margin(0.6, 0.2) == pytest.approx(0.5)  # halfway from 0.2 to 1
    assert label_margin(0.1, 0.2) == pytest.approx(0.5)  # halfway from 0.2 to 0


def test_frames_rank_by_their_least_certain_decision():
    thresholds = {"polyp": 0.3, "cecum": 0.6}
    sure = {"labels": {"polyp": 0.97, "cecum": 0.02}, "thresholds": thresholds, "boxes": [{"score": 0.95}]}
    label_on_edge = {"labels": {"polyp": 0.97, "cecum": 0.58}, "thresholds": thresholds, "boxes": [{"score": 0.95}]}
    weak_box = {"labels": {"polyp": 0.97, "cecum": 0.02}, "thresholds": thresholds, "boxes": [{"score": 0.95}, {"score": 0.3}]}
    ranked = sorted([sure, label_on_edge, weak_box], key=frame_confidence)
    assert ranked == [label_on_edge, weak_box, sure]
    # The tuned threshold matters: 0.58 is undecided against 0.6, clear against the default 0.5 -> no.
    assert frame_confidence({"labels": {"cecum": 0.58}, "thresholds": {"cecum": 0.6}}) < \
        frame_confidence({"labels": {"cecum": 0.58}})
    assert frame_confidence({"labels": {}, "boxes": []}) is None


def test_pushed_prediction_carries_the_frame_confidence():
    entry = {"width": 100, "height": 80, "labels": {"polyp": 0.9, "cecum": 0.55}, "thresholds": {"polyp": 0.5, "cecum": 0.5},
             "predicted_labels": ["polyp", "cecum"], "boxes": [{"class": "polyp", "score": 0.8, "xywh_px": [1, 2, 30, 20]}],
             "inset": {"state": "green"}}
    pred, problems = prediction_from_combined(entry, 100, 80, "v1", load_taxonomy())
    assert not problems
    assert pred["score"] == pytest.approx(0.1)  # cecum: (0.55 - 0.5) / 0.5
    assert pred["score"] == frame_confidence(entry)


def test_task_fields_name_the_least_certain_findings_first():
    from kvasir_ml.labelstudio.uncertainty import finding_confidences, uncertainty_fields

    entry = {"labels": {"polyp": 0.47, "dyed": 0.91, "cecum": 0.01}, "thresholds": {"polyp": 0.5, "dyed": 0.4},
             "boxes": [{"class": "polyp", "score": 0.31, "xywh_px": [1, 2, 3, 4]}]}
    parts = finding_confidences(entry)
    assert [p["finding"] for p in parts] == ["polyp", "polyp box", "dyed", "cecum"]
    fields = uncertainty_fields(entry, max_shown=3)
    assert fields["model_confidence"] == round(frame_confidence(entry), 3) == 0.06  # (0.5 - 0.47) / 0.5
    assert fields["model_findings"] == ("polyp 0.47 (threshold 0.50) · polyp box 0.31 · dyed 0.91 (threshold 0.40)"
                                        " · +1 more certain")
    assert uncertainty_fields({"labels": {}, "boxes": []}) == {}
