"""The review round trip against the real server: top suspects pushed with the given labels
as the draft and the suggestion beside it -> a reviewer takes the suggestion -> pull -> a new
canonical version with the corrections (the base file untouched)."""

from __future__ import annotations

import pytest

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.labelstudio.convert import image_key_from_task_data
from kvasir_ml.labelstudio.sync import pull_project
from kvasir_ml.review.project import SUGGESTION_VERSION, push_review

pytestmark = pytest.mark.labelstudio


def _suspects(ds):
    f = [img["file_name"] for img in ds.images]  # polyps, cecum, resection margin, esophagitis, lifted, z-line
    box0 = [a["bbox"] for a in ds.annotations if a["image_id"] == ds.images[0]["id"]][0]
    return [
        {"file_name": f[3], "kind": "label", "score": 0.9, "given": ["z-line", "esophagitis"], "suggested": ["z-line"],
         "flagged": True, "label_scores": {"z-line": 0.95, "esophagitis": 0.1}},
        {"file_name": f[0], "kind": "box-spurious", "score": 0.8, "given": {"class": "polyp", "xywh_px": box0},
         "suggested": None, "flagged": True},
        {"file_name": f[1], "kind": "box-missing", "score": 0.7, "given": None,
         "suggested": {"class": "polyp", "xywh_px": [10.0, 12.0, 30.0, 20.0], "score": 0.9}, "flagged": True},
        {"file_name": f[5], "kind": "label", "score": 0.1, "given": ["z-line"], "suggested": ["z-line"], "flagged": False},
    ]


def test_review_push_shows_given_and_suggestion_and_pull_applies_the_corrections(ls_client, ls_data_root, tiny_dataset):
    ds = tiny_dataset(ls_data_root, "review", n=6)
    base = ls_data_root / "review.coco.json"
    suspects = _suspects(ds)
    pushed = push_review(ls_client, suspects, base, ls_data_root, "review tiny", top_k=3)
    assert pushed.file_names == [suspects[0]["file_name"], suspects[1]["file_name"], suspects[2]["file_name"]]

    sdk, pid = ls_client.sdk, pushed.project_id
    assert sdk.projects.get(id=pid).model_version == pushed.expert_version  # the given labels are the draft
    tasks = sorted(ls_client.list_tasks(pid), key=lambda t: t["id"])
    assert [image_key_from_task_data(t["data"]) for t in tasks] == pushed.file_names  # most likely error first
    preds = {t["id"]: {p.model_version: p for p in sdk.predictions.list(task=t["id"])} for t in tasks}
    for t, s in zip(tasks, suspects):
        assert set(preds[t["id"]]) == {pushed.expert_version, SUGGESTION_VERSION}
        assert preds[t["id"]][pushed.expert_version].score == pytest.approx(1 - s["score"])  # queue order
    esoph = preds[tasks[0]["id"]]

    def choices(pred):
        return [r["value"]["choices"] for r in pred.result if r["from_name"] == "labels"]

    assert sorted(choices(esoph[pushed.expert_version])[0]) == ["esophagitis", "z-line"]  # given
    assert choices(esoph[SUGGESTION_VERSION]) == [["z-line"]]  # suggested
    polyp = preds[tasks[1]["id"]]
    rects = {v: [r for r in p.result if r["type"] == "rectanglelabels"] for v, p in polyp.items()}
    assert len(rects[pushed.expert_version]) == 1 and rects[SUGGESTION_VERSION] == []  # the spurious box goes
    cecum = preds[tasks[2]["id"]][SUGGESTION_VERSION]
    assert [r["value"]["rectanglelabels"] for r in cecum.result if r["type"] == "rectanglelabels"] == [["polyp"]]

    # The reviewer takes the suggestion on the first two tasks and leaves the third.
    for t in tasks[:2]:
        sdk.annotations.create(id=t["id"], result=preds[t["id"]][SUGGESTION_VERSION].result)
    result = pull_project(ls_client, pid, ls_data_root, base_path=base, expert_changes="apply")
    new, old = load_canonical(result.path), load_canonical(base)
    by = new.image_by_file
    assert by[pushed.file_names[0]]["labels"] == ["z-line"]
    assert not [a for a in new.annotations if a["image_id"] == by[pushed.file_names[1]]["id"]]
    for img in old.images:  # everything else as it was
        if img["file_name"] not in pushed.file_names[:2]:
            assert by[img["file_name"]]["labels"] == img["labels"]
    assert sorted(old.image_by_file[pushed.file_names[0]]["labels"]) == ["esophagitis", "z-line"]  # base untouched
    assert result.report.n_applied == 2
