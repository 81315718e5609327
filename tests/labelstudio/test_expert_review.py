"""Expert labels cannot be lost silently (real server): push shows them as the pre-filled draft
beside the model's prediction; a pull names every submission that removes, moves or relabels
them or copies the model draft, keeps them by default and takes them only with ``apply``."""

from __future__ import annotations

import json

import pytest

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.labelstudio.client import LabelStudioError
from kvasir_ml.labelstudio.convert import box_to_result, choices_result, image_key_from_task_data
from kvasir_ml.labelstudio.expert import expert_version_for, review_path_for
from kvasir_ml.labelstudio.sync import find_project, match_predictions, pull_project, push_dataset, set_prelabeling_model

pytestmark = pytest.mark.labelstudio


def _expert_dataset(root, tiny_dataset):
    """Six frames, each with an expert polyp box, labels polyp (+ dyed on odd frames) and inset none."""
    ds = tiny_dataset(root, "expert", n=6)
    ds.annotations = []
    for i, img in enumerate(ds.images):
        img.update(labels=["polyp"] + (["dyed"] if i % 2 else []), inset="none")
        ds.add_box(img["id"], "polyp", [10.0, 8.0, img["width"] / 3, img["height"] / 3])
    base = root / "expert.coco.json"
    ds.save(base, keep_backup=False)
    return ds, base


def _model_entries(ds):
    return [{"file_name": img["file_name"], "width": img["width"], "height": img["height"],
             "labels": {"polyp": 0.7, "ileum": 0.6}, "predicted_labels": ["polyp", "ileum"],
             "boxes": [{"class": "polyp", "score": 0.4, "xywh_px": [img["width"] / 2, img["height"] / 2, 20.0, 15.0]}],
             "inset": {"state": "black"}} for img in ds.images]


def _boxes(ds, file_name):
    names = {c["id"]: c["name"] for c in ds.categories}
    iid = ds.image_by_file[file_name]["id"]
    return [(names[a["category_id"]], a["bbox"]) for a in ds.annotations if a["image_id"] == iid]


def test_expert_labels_are_prefilled_kept_for_review_and_applied_only_on_request(ls_client, ls_data_root, tiny_dataset):
    ds, base = _expert_dataset(ls_data_root, tiny_dataset)
    expert = expert_version_for(base)
    preds, _ = match_predictions(_model_entries(ds), ls_data_root, {i["file_name"] for i in ds.images})
    pushed = push_dataset(ls_client, ds, ls_data_root, "expert review", predictions=preds, model_version="m-1",
                          expert_version=expert)
    pid = pushed.project_id
    assert (pushed.n_predictions_created, pushed.expert.n_created) == (6, 6)
    set_prelabeling_model(ls_client, pid, expert)
    again = push_dataset(ls_client, ds, ls_data_root, "expert review", predictions=preds, model_version="m-1",
                         expert_version=expert)
    assert (again.expert.n_created, again.expert.n_existing, again.n_predictions_created) == (0, 6, 0)

    sdk = ls_client.sdk
    tid = {image_key_from_task_data(t["data"]): t["id"] for t in ls_client.list_tasks(pid)}
    f = [img["file_name"] for img in ds.images]
    img = ds.image_by_file
    # What annotators get: the label stream (next task) pre-fills from the expert draft only; the
    # task (data manager, labeling page) carries both, the model's as its own tab.
    nxt = ls_client.get_path("next task", f"api/projects/{pid}/next").json()
    assert [p["model_version"] for p in nxt["predictions"]] == [expert]
    stored = {p.model_version: p for p in sdk.predictions.list(task=tid[f[0]])}
    assert set(stored) == {expert, "m-1"}
    assert stored[expert].result[0]["value"]["rectanglelabels"] == ["polyp"]
    assert stored[expert].score == stored["m-1"].score  # the queue still ranks by the model's confidence

    def annotate(name, boxes, labels, inset="none"):
        w, h = img[name]["width"], img[name]["height"]
        sdk.annotations.create(id=tid[name], result=[box_to_result(c, b, w, h) for c, b in boxes]
                               + [choices_result("labels", labels), choices_result("inset", [inset])])

    (cls, box0), = _boxes(ds, f[0])
    annotate(f[0], [("polyp", [box0[0] + box0[2] / 2, *box0[1:]])], ["polyp"])  # (a) moved: IoU 1/3
    annotate(f[1], [], ["polyp", "dyed"])  # (b) the box deleted
    annotate(f[2], [("resection-margin", _boxes(ds, f[2])[0][1])], ["resection-margin"])  # (c) relabeled
    model_draft = next(p for p in sdk.predictions.list(task=tid[f[3]]) if p.model_version == "m-1")
    sdk.annotations.create(id=tid[f[3]], result=model_draft.result)  # (d) the model draft, unedited
    annotate(f[4], _boxes(ds, f[4]), ["polyp", "ileum"])  # (e) only a finding added

    result = pull_project(ls_client, pid, ls_data_root, base_path=base)  # default: review
    new, old = load_canonical(result.path), load_canonical(base)
    for name in f:  # no expert label or box lost
        assert set(old.image_by_file[name]["labels"]) <= set(new.image_by_file[name]["labels"]), name
        (new_cls, new_box), = _boxes(new, name)
        assert new_cls == "polyp" and new_box == pytest.approx(_boxes(old, name)[0][1], abs=0.01), name
    assert new.image_by_file[f[4]]["labels"] == ["ileum", "polyp"]  # taxonomy order; the addition taken
    flags = {fl.file_name: fl for fl in result.report.expert_review}
    assert set(flags) == set(f[:4]) and result.report.n_held_for_review == 4
    assert "moved" in " ".join(flags[f[0]].changes) and "IoU 0.33" in " ".join(flags[f[0]].changes)
    assert "removed" in " ".join(flags[f[1]].changes) and "relabeled resection-margin" in " ".join(flags[f[2]].changes)
    assert flags[f[3]].kind == "model-draft" and all(flags[n].kind == "expert-change" for n in f[:3])
    assert {fl.task_id for fl in flags.values()} == {tid[n] for n in f[:4]}
    text = "\n".join(result.report.summary_lines())
    assert all(f"task {tid[n]} ({n})" in text for n in f[:4]) and "expert labels kept" in text
    review = json.loads(result.review_path.read_text())
    assert result.review_path == review_path_for(base) and review["version_written"] == str(result.path)
    assert {(t["task_id"], t["file_name"], t["action"]) for t in review["tasks"]} == {
        (tid[n], n, "kept the expert labels") for n in f[:4]}
    assert sdk.projects.exports.list(id=pid) == []  # snapshots deleted after the pull

    # The same pull again: same content, no duplicate version.
    twice = pull_project(ls_client, pid, ls_data_root, base_path=base)
    assert twice.path is None and twice.same_as == result.path
    assert not (ls_data_root / "expert.v3.coco.json").exists()

    v2_bytes, base_bytes = result.path.read_bytes(), base.read_bytes()
    applied = pull_project(ls_client, pid, ls_data_root, base_path=base, expert_changes="apply")
    assert applied.path.name == "expert.v3.coco.json"  # a new version; base and v2 untouched
    assert result.path.read_bytes() == v2_bytes and base.read_bytes() == base_bytes
    took = load_canonical(applied.path)
    assert _boxes(took, f[0])[0][1] == pytest.approx([box0[0] + box0[2] / 2, *box0[1:]], abs=0.01)
    assert _boxes(took, f[1]) == [] and _boxes(took, f[2])[0][0] == "resection-margin"
    assert took.image_by_file[f[3]]["labels"] == ["ileum", "polyp"] and took.image_by_file[f[3]]["inset"] == "black"
    assert {fl.action for fl in applied.report.expert_review} == {"applied"} and len(applied.report.expert_review) == 4


def test_a_wrong_data_root_leaves_no_project_behind(ls_client, ls_data_root, tiny_dataset, tmp_path):
    # outside the server's document root (refused storage) and inside it but not it (images 404)
    for root, reason in ((tmp_path, "must be a subdirectory"), (ls_data_root / "wrongroot", "cannot show the pushed images")):
        ds = tiny_dataset(root, "elsewhere", n=2)
        with pytest.raises(LabelStudioError, match=reason):
            push_dataset(ls_client, ds, root, "wrong root")
        assert find_project(ls_client, "wrong root") is None
