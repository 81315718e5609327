"""Pure parts of the expert-label guard (expert.py), the run-named model versions and the
backend's reason for an unusable task. The end-to-end check against the real server is in
test_expert_review.py."""

from __future__ import annotations

from kvasir_ml.labelstudio.backend import Backend
from kvasir_ml.labelstudio.convert import Labeling
from kvasir_ml.labelstudio.expert import MOVED_IOU, expert_changes, expert_prediction, same_labeling
from kvasir_ml.labelstudio.sync import model_version_for

EXPERT = Labeling(labels=["polyp", "dyed"], boxes=[("polyp", (10.0, 10.0, 40.0, 40.0))], inset="green")


def test_additions_pass_and_each_kind_of_loss_is_named():
    added = Labeling(["polyp", "dyed", "lifted"], [*EXPERT.boxes, ("polyp", (60.0, 60.0, 10.0, 10.0))], "green")
    assert expert_changes(EXPERT, added) == []
    nudged = Labeling(EXPERT.labels, [("polyp", (11.0, 10.0, 40.0, 40.0))], "green")  # IoU 0.95: a touch-up
    assert expert_changes(EXPERT, nudged) == []
    moved = Labeling(EXPERT.labels, [("polyp", (30.0, 10.0, 40.0, 40.0))], "green")
    assert [c.split(" moved")[0] for c in expert_changes(EXPERT, moved)] == ["polyp box at [10.0, 10.0, 40.0, 40.0]"]
    assert "IoU 0.33" in expert_changes(EXPERT, moved)[0] and MOVED_IOU > 0.33
    relabeled = Labeling(["dyed", "resection-margin"], [("resection-margin", EXPERT.boxes[0][1])], "green")
    changes = expert_changes(EXPERT, relabeled)
    assert changes[0] == "labels removed ['polyp'] (added ['resection-margin'])" and "relabeled resection-margin" in changes[1]
    removed = Labeling(["polyp", "dyed"], [], "none")
    assert expert_changes(EXPERT, removed) == ["inset green -> none", "polyp box at [10.0, 10.0, 40.0, 40.0] removed"]


def test_an_unedited_draft_is_recognised_within_rounding_only():
    model = Labeling(["polyp"], [("polyp", (50.0, 5.0, 20.0, 20.0))], "black")
    assert same_labeling(Labeling(["polyp"], [("polyp", (50.0000001, 5.0, 20.0, 20.0))], "black"), model)
    assert not same_labeling(Labeling(["polyp"], [("polyp", (51.0, 5.0, 20.0, 20.0))], "black"), model)
    assert not same_labeling(Labeling(["polyp"], [("polyp", (50.0, 5.0, 20.0, 20.0))], "green"), model)


def test_the_expert_draft_shows_the_file_and_falls_back_to_the_model_only_without_expert_labels():
    model_results = [{"from_name": "labels", "type": "choices", "value": {"choices": ["ileum"]}},
                     {"from_name": "inset", "type": "choices", "value": {"choices": ["black"]}}]
    draft = expert_prediction(EXPERT, 100, 80, "canonical:x-1", model_results, score=0.25)
    assert draft["model_version"] == "canonical:x-1" and draft["score"] == 0.25
    values = [r["value"] for r in draft["result"]]
    assert values[0]["rectanglelabels"] == ["polyp"] and values[1]["choices"] == ["polyp", "dyed"]
    assert values[2]["choices"] == ["green"] and len(values) == 3  # the model's labels and inset left out
    bare = expert_prediction(Labeling([], [], "none"), 100, 80, "canonical:x-1", model_results)
    assert [r["value"]["choices"] for r in bare["result"]] == [["ileum"], ["none"]]  # model's labels, file's inset
    assert expert_prediction(Labeling([], [], None), 100, 80, "canonical:x-1") is None


def test_model_versions_name_the_run(tmp_path):
    ckpt = tmp_path / "runs" / "ml-r50" / "checkpoints" / "best.pt"
    turn = tmp_path / "runs" / "loop-2" / "detector" / "checkpoints" / "last.pt"
    for path in (ckpt, turn):
        path.parent.mkdir(parents=True)
        path.write_bytes(path.parent.parent.name.encode())
    assert model_version_for(ckpt, turn).startswith("kvasir-ml-ml-r50.best+loop-2.detector.last-")
    assert model_version_for(ckpt) != model_version_for(turn)


def test_backend_answers_an_unusable_task_with_its_reason(tmp_path):
    (tmp_path / "imgs").mkdir()
    backend = Backend(tmp_path, lambda paths: [], "m-1")
    answer = backend.predict({"tasks": [{"id": 7, "data": {"file_name": "imgs/missing.jpg"}},
                                        {"id": 8, "data": {"image": "https://example.org/x.jpg"}}]})
    first, second = answer["results"]
    assert first["result"] == [] and "task 7" in first["error"] and "does not exist" in first["error"]
    assert "task 8" in second["error"] and "not a local-files URL" in second["error"]
    assert answer["errors"] == [first["error"], second["error"]]


def test_an_unedited_model_draft_on_an_unlabelled_image_is_held_by_default_and_taken_with_apply():
    from kvasir_ml.data.coco import CanonicalDataset
    from kvasir_ml.labelstudio.convert import box_to_result, choices_result
    from kvasir_ml.labelstudio.from_export import export_to_canonical

    base = CanonicalDataset.new("t")
    base.add_image("a/new.jpg", 100, 80, [], "t", None)
    base.add_image("a/other.jpg", 100, 80, [], "t", None)
    model = [box_to_result("polyp", (5, 5, 30, 20), 100, 80), choices_result("labels", ["polyp"]),
             choices_result("inset", ["black"])]
    edited = [box_to_result("polyp", (9, 5, 30, 20), 100, 80), *model[1:]]
    tasks = [{"id": 1, "data": {"file_name": "a/new.jpg"}, "annotations": [{"id": 11, "result": model}],
              "predictions": [{"model_version": "m-1", "result": model}]},
             {"id": 2, "data": {"file_name": "a/other.jpg"}, "annotations": [{"id": 12, "result": edited}],
              "predictions": [{"model_version": "m-1", "result": model}]}]
    held, report = export_to_canonical(tasks, base=base)
    assert [(f.task_id, f.kind) for f in report.expert_review] == [(1, "model-draft")]
    assert held.image_by_file["a/new.jpg"]["labels"] == [] and held.image_by_file["a/other.jpg"]["labels"] == ["polyp"]
    taken, report = export_to_canonical(tasks, base=base, expert_changes="apply")
    assert taken.image_by_file["a/new.jpg"]["labels"] == ["polyp"] and report.expert_review[0].action == "applied"
