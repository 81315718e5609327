"""Pure converters: exact pixel <-> percent round trips, image keys, predictions."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvasir_ml.labelstudio.convert import (
    ConvertError, box_to_result, image_key_from_task_data, image_url, labeling_from_results,
    prediction_from_combined, resolve_in_root, result_box_xywh_px, safe_relative_path,
)
from kvasir_ml.taxonomy import load_taxonomy

TAX = load_taxonomy()


@st.composite
def image_and_box(draw):
    w = draw(st.integers(1, 4000))
    h = draw(st.integers(1, 4000))
    # boxes of at least MIN_BOX_SIDE_PX (1 px) a side: smaller ones are refused
    x = draw(st.floats(0, w - 1, allow_nan=False))
    y = draw(st.floats(0, h - 1, allow_nan=False))
    bw = draw(st.floats(1, w - x, allow_nan=False))
    bh = draw(st.floats(1, h - y, allow_nan=False))
    return w, h, (x, y, bw, bh)


@settings(max_examples=300, deadline=None)
@given(image_and_box())
def test_pixel_percent_round_trip_within_001_px(case):
    w, h, box = case
    result = box_to_result("polyp", box, w, h)
    assert result["original_width"] == w and result["original_height"] == h
    back, warning = result_box_xywh_px(result, w, h)
    assert warning is None
    assert all(abs(a - b) <= 0.01 for a, b in zip(back, box))


@settings(max_examples=100, deadline=None)
@given(image_and_box(), st.sampled_from(TAX.box_class_names))
def test_results_to_labeling_keeps_class_and_implied_label(case, cls):
    w, h, box = case
    labeling, problems = labeling_from_results([box_to_result(cls, box, w, h)], (w, h), TAX, 1)
    assert not problems
    assert labeling.boxes[0][0] == cls
    implied = TAX.box_classes[TAX.box_class_index(cls)].label
    assert labeling.labels == [implied]


@pytest.mark.parametrize("data, key", [
    ({"file_name": "imgs/a b.jpg"}, "imgs/a b.jpg"),
    ({"image": "/data/local-files/?d=imgs/a%20b.jpg"}, "imgs/a b.jpg"),
    ({"image": "http://127.0.0.1:8080/data/local-files/?d=imgs%2Fx%2Fc.jpg"}, "imgs/x/c.jpg"),
    ({"image": image_url("dir/ü #1.jpg")}, "dir/ü #1.jpg"),
    # decoded once, like Label Studio's local-files view: a literal "%2E%2E" folder, inside the root
    ({"image": "/data/local-files/?d=%252E%252E/x.jpg"}, "%2E%2E/x.jpg"),
    ({"image": image_url("x%41.jpg")}, "x%41.jpg"),
])
def test_image_key_from_task_data(data, key):
    assert image_key_from_task_data(data) == key


@pytest.mark.parametrize("data", [
    {"file_name": "../etc/passwd"},
    {"file_name": "imgs/../../x.jpg"},
    {"file_name": "/etc/passwd"},
    {"image": "/data/local-files/?d=..%2F..%2Fsecret.jpg"},
    {"image": "/data/upload/1/abc.jpg"},
    {"image": "https://example.org/a.jpg"},
    {},
])
def test_image_keys_that_escape_or_cannot_resolve_are_rejected(data):
    with pytest.raises(ConvertError):
        image_key_from_task_data(data)


def test_resolve_in_root_refuses_symlink_escape(tmp_path):
    root = tmp_path / "root"
    (root / "imgs").mkdir(parents=True)
    os.symlink(tmp_path, root / "imgs" / "up")
    assert resolve_in_root(root, "imgs/a.jpg") == (root / "imgs" / "a.jpg").resolve()
    with pytest.raises(ConvertError, match="outside the data root"):
        resolve_in_root(root, "imgs/up/other.jpg")
    assert safe_relative_path("a/./b//c.jpg") == "a/b/c.jpg"


def test_prediction_from_combined_converts_exactly():
    entry = {"image": "x.jpg", "width": 200, "height": 100,
             "labels": {"polyp": 0.9, "dyed": 0.3}, "predicted_labels": ["polyp", "nonsense"],
             "boxes": [{"class": "polyp", "score": 0.7, "xywh_px": [10, 20, 30, 40]},
                       {"class": "tumour", "score": 0.9, "xywh_px": [1, 1, 2, 2]}],
             "inset": {"state": "green", "box_xywh_px": [0, 50, 40, 50]}}
    pred, problems = prediction_from_combined(entry, 200, 100, "m1", TAX, task_id=7)
    assert pred["model_version"] == "m1"
    assert pred["score"] == pytest.approx(0.4)  # least certain: dyed 0.3 vs default threshold 0.5
    rect = pred["result"][0]
    assert rect["value"]["x"] == pytest.approx(5.0) and rect["value"]["height"] == pytest.approx(40.0)
    assert rect["score"] == 0.7 and rect["original_width"] == 200
    assert pred["result"][1]["value"]["choices"] == ["polyp"]
    assert pred["result"][2]["value"]["choices"] == ["green"]
    kinds = sorted(p.kind for p in problems)
    assert kinds == ["unknown-box-class", "unknown-label"] and all(p.task_id == 7 for p in problems)


def test_prediction_in_another_pixel_frame_is_rescaled():
    entry = {"width": 100, "height": 50, "boxes": [{"class": "polyp", "score": 0.5, "xywh_px": [10, 10, 20, 20]}]}
    pred, _ = prediction_from_combined(entry, 200, 100, "m", TAX)
    back, _ = result_box_xywh_px(pred["result"][0], 200, 100)
    assert back == pytest.approx((20, 20, 40, 40))
