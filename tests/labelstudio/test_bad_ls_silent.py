"""Label Studio exports that were converted silently wrong (issue 19): each is now refused by name
or converted right."""

from __future__ import annotations

import pytest

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.labelstudio.convert import (
    ConvertError, annotation_time, box_to_result, choices_result, image_url, result_box_xywh_px,
)
from kvasir_ml.labelstudio.from_export import export_to_canonical


def _base(*names):
    base = CanonicalDataset.new("t")
    for name in names:
        base.add_image(name, 600, 500, [], "t", None)
    return base


def test_a_box_below_one_pixel_is_refused_by_name_not_kept_as_a_6e_9_px_box():
    stray = box_to_result("polyp", (100, 100, 60, 50), 600, 500, region_id="stray")
    stray["value"]["width"] = 1e-9  # percent: 6e-9 px of a 600 px frame
    with pytest.raises(ConvertError, match="'stray' is 6e-09 x 50 px, below the minimum box side of 1 px"):
        result_box_xywh_px(stray, 600, 500, task_id=4)
    tasks = [{"id": 4, "data": {"file_name": "a.jpg"},
              "annotations": [{"id": 40, "result": [stray, choices_result("labels", ["polyp"])]}]}]
    out, report = export_to_canonical(tasks, base=_base("a.jpg"))
    assert [(p.task_id, p.kind) for p in report.errors] == [(4, "bad-box")]
    assert "minimum box side" in report.errors[0].message
    assert out.image_by_file["a.jpg"]["labels"] == []  # the image keeps its previous state
    assert not [a for a in out.annotations if a["image_id"] == out.image_by_file["a.jpg"]["id"]]
    ok = box_to_result("polyp", (100, 100, 1.0, 1.0), 600, 500)  # one pixel is the smallest box kept
    assert result_box_xywh_px(ok, 600, 500)[0][2:] == pytest.approx((1.0, 1.0))


def test_latest_annotation_is_chosen_by_time_not_by_text_across_utc_offsets():
    older = {"id": 1, "updated_at": "2026-12-05T10:00:00+02:00",  # 08:00 UTC; as text it sorts last
             "result": [choices_result("labels", ["polyp"]), choices_result("inset", ["none"])]}
    newer = {"id": 2, "updated_at": "2026-12-05T09:00:00Z",
             "result": [choices_result("labels", ["ileum"]), choices_result("inset", ["none"])]}
    tasks = [{"id": 7, "data": {"file_name": "a.jpg"}, "annotations": [older, newer]}]
    out, _ = export_to_canonical(tasks, base=_base("a.jpg"))
    assert out.image_by_file["a.jpg"]["labels"] == ["ileum"]
    out, _ = export_to_canonical(tasks, base=_base("a.jpg"), policy="earliest")
    assert out.image_by_file["a.jpg"]["labels"] == ["polyp"]
    assert annotation_time("2026-12-05T09:00:00") == annotation_time("2026-12-05T09:00:00+00:00")  # no offset: UTC
    assert annotation_time("yesterday") < annotation_time("1970-01-01T00:00:00Z")  # unreadable: sorts first


def test_a_url_only_task_for_a_percent_name_is_applied_to_that_file_not_a_decoded_twin():
    url = image_url("imgs/x%41.jpg")
    assert url.endswith("x%2541.jpg")  # as Label Studio's local storage writes it (quoted once)
    tasks = [{"id": 9, "data": {"image": url},
              "annotations": [{"id": 90, "result": [choices_result("labels", ["polyp"]),
                                                    choices_result("inset", ["none"])]}]}]
    out, report = export_to_canonical(tasks, base=_base("imgs/x%41.jpg", "imgs/xA.jpg"))
    assert out.image_by_file["imgs/x%41.jpg"]["labels"] == ["polyp"]
    assert out.image_by_file["imgs/xA.jpg"]["labels"] == []  # was: the annotation landed here
    assert not report.errors
