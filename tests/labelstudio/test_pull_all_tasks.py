"""``pull --all-tasks`` without the all-tasks snapshot (annotated/skipped exports + the task listing)
writes what the snapshot path writes (still used with ``save_export``), against a real server."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.labelstudio.convert import box_to_result, choices_result, image_key_from_task_data, task_payload
from kvasir_ml.labelstudio.sync import match_predictions, pull_project, push_dataset

pytestmark = pytest.mark.labelstudio


def _entry(img, score):
    return {"image": img["file_name"], "width": img["width"], "height": img["height"],
            "labels": {"polyp": score, "cecum": 0.1}, "predicted_labels": ["polyp"] if score > 0.5 else [],
            "boxes": [{"class": "polyp", "score": 0.7, "xywh_px": [1.5, 2.25, 10.0, 8.0]}],
            "inset": {"state": "none", "box_xywh_px": None}}


def _pulled(result):
    path = result.path or result.same_as
    ds = load_canonical(path)
    report = dataclasses.asdict(result.report)
    return json.dumps({"images": ds.images, "annotations": ds.annotations, "report": report}, sort_keys=True,
                      default=str)


def test_all_tasks_pull_from_the_listing_equals_the_snapshot_pull(ls_client, ls_data_root, tiny_dataset, tmp_path):
    ds = tiny_dataset(ls_data_root, "alltasks", n=7)
    base = ls_data_root / "alltasks.coco.json"
    preds, _ = match_predictions([_entry(img, s) for img, s in zip(ds.images[:5], (0.9, 0.8, 0.3, 0.6, 0.7))],
                                 ls_data_root, {i["file_name"] for i in ds.images})
    pid = push_dataset(ls_client, ds, ls_data_root, "alltasks", predictions=preds, model_version="m-1").project_id
    img0, img1, img2 = ds.images[:3]
    # A second task of img0 whose model draft (unlike the first task's) is what img0's annotator submits:
    # only its fetched content shows the submission is an unedited draft.
    draft = [box_to_result("polyp", [5.0, 6.0, 30.0, 20.0], img0["width"], img0["height"]),
             choices_result("labels", ["polyp", "cecum"])]
    dup = task_payload(img0["file_name"], [{"model_version": "m-2", "score": 0.5, "result": draft}])
    ls_client.post_json("import a duplicate task", f"api/projects/{pid}/import", [dup])
    tasks = sorted(ls_client.list_tasks(pid, extra_fields=("total_predictions",)), key=lambda t: t["id"])
    assert len(tasks) == 8 and [t["total_predictions"] for t in tasks] == [1, 1, 1, 1, 1, 0, 0, 1]
    tid = {image_key_from_task_data(t["data"]): t["id"] for t in tasks[:7]}
    ls_client.sdk.annotations.create(id=tid[img0["file_name"]], result=draft)  # the duplicate's draft, unedited
    ls_client.sdk.annotations.create(id=tid[img1["file_name"]], result=[
        box_to_result("polyp", [3.0, 4.0, 20.0, 10.0], img1["width"], img1["height"]),
        choices_result("labels", ["polyp"])])
    ls_client.sdk.annotations.create(id=tid[img2["file_name"]], result=[], was_cancelled=True)

    listed = pull_project(ls_client, pid, ls_data_root, base_path=base, out_path=tmp_path / "a" / "x.v2.coco.json",
                          all_tasks=True, expert_changes="apply")
    snap = pull_project(ls_client, pid, ls_data_root, base_path=base, out_path=tmp_path / "b" / "x.v2.coco.json",
                        all_tasks=True, save_export=True, expert_changes="apply")
    assert snap.export_path is not None and listed.export_path is None
    assert _pulled(listed) == _pulled(snap)
    rep = listed.report
    assert (rep.n_tasks, rep.n_applied, rep.n_skipped, rep.n_predictions_only, rep.n_unlabeled) == (8, 2, 1, 2, 2)
    kinds = {f.file_name: f.kind for f in rep.expert_review}
    assert kinds[img0["file_name"]] == "model-draft"
