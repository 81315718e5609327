"""Pull tells annotators and researchers what happened to every task, and writes a new
version only when something changed."""

from __future__ import annotations

import pytest

from kvasir_ml.labelstudio.convert import choices_result, image_key_from_task_data
from kvasir_ml.labelstudio.sync import REDO_VIEW_TITLE, pull_project, push_dataset

pytestmark = pytest.mark.labelstudio


def _rotated_box_without_id(img):
    return {"type": "rectanglelabels", "from_name": "boxes", "to_name": "image", "original_width": img["width"],
            "original_height": img["height"],
            "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 30, "rectanglelabels": ["polyp"]}}


def _view_task_ids(client, pid):
    views = [v for v in client.sdk.views.list(project=pid) if (v.data or {}).get("title") == REDO_VIEW_TITLE]
    if not views:
        return None
    return sorted(t.id for t in client.sdk.tasks.list(project=pid, view=views[0].id, fields="task_only"))


def test_pull_lists_skipped_rejected_and_deleted_tasks_and_skips_unchanged_versions(ls_client, ls_data_root,
                                                                                     tiny_dataset):
    ds = tiny_dataset(ls_data_root, "pullreport", n=4)
    base = ls_data_root / "pullreport.coco.json"
    pid = push_dataset(ls_client, ds, ls_data_root, "pull report").project_id
    tid = {image_key_from_task_data(t["data"]): t["id"] for t in ls_client.list_tasks(pid)}
    good, skipped, bad, deleted = (ds.images[i]["file_name"] for i in range(4))
    sdk = ls_client.sdk
    sdk.annotations.create(id=tid[good], result=[choices_result("labels", ["ileum"]), choices_result("inset", ["none"])])
    sdk.annotations.create(id=tid[skipped], result=[], was_cancelled=True)
    sdk.annotations.create(id=tid[bad], result=[_rotated_box_without_id(ds.images[2]), choices_result("inset", ["green"])])
    sdk.tasks.delete(id=tid[deleted])

    first = pull_project(ls_client, pid, ls_data_root, base_path=base, expert_changes="apply")
    rep = first.report
    assert first.path is not None and first.path.name == "pullreport.v2.coco.json"
    assert rep.skipped_task_ids == [tid[skipped]] and rep.rejected_task_ids == [tid[bad]]
    assert rep.deleted == [{"file_name": deleted, "task_id": None}]
    text = "\n".join(rep.summary_lines())
    assert f"skipped tasks (1): {tid[skipped]}" in text and f"rejected (redo them) tasks (1): {tid[bad]}" in text
    assert deleted in text
    assert "rectangle '#1 (no id)' is rotated" in text  # named by its place when it has no id
    # The rejected task is findable in Label Studio: a data-manager tab lists exactly it.
    assert first.redo_view == REDO_VIEW_TITLE and _view_task_ids(ls_client, pid) == [tid[bad]]

    # Nothing changed since v2: no v3.
    again = pull_project(ls_client, pid, ls_data_root, base_path=first.path, expert_changes="apply")
    assert again.path is None and not (ls_data_root / "pullreport.v3.coco.json").exists()

    # The annotator redoes the rejected frame: v3, and the tab is gone.
    sdk.annotations.create(id=tid[bad], result=[choices_result("labels", ["polyp"]), choices_result("inset", ["green"])])
    fixed = pull_project(ls_client, pid, ls_data_root, base_path=first.path, expert_changes="apply")
    assert fixed.path is not None and fixed.path.name == "pullreport.v3.coco.json"
    assert fixed.report.rejected_task_ids == [] and fixed.redo_view is None and _view_task_ids(ls_client, pid) is None
