"""Round trip against a real Label Studio server (started once per session by conftest).

push (with pre-annotations) -> annotate through the API as an annotator would -> pull ->
the new canonical version holds exactly those labels and boxes; re-push is a no-op.
"""

from __future__ import annotations

import json
import logging

import pytest

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.labelstudio.convert import box_to_result, choices_result, image_key_from_task_data
from kvasir_ml.labelstudio.sync import find_project, match_predictions, pull_project, push_dataset

pytestmark = pytest.mark.labelstudio


def _predictions(ds):
    return [{"image": img["file_name"], "width": img["width"], "height": img["height"],
             "labels": {"polyp": 0.8, "cecum": 0.1}, "predicted_labels": ["polyp"],
             "boxes": [{"class": "polyp", "score": 0.66, "xywh_px": [1.5, 2.25, 10.0, 8.0]}],
             "inset": {"state": "black", "box_xywh_px": None}} for img in ds.images[:4]]


def test_push_annotate_pull_round_trip(ls_client, ls_server, ls_data_root, tiny_dataset):
    ds = tiny_dataset(ls_data_root, "roundtrip", n=6)
    base = ls_data_root / "roundtrip.coco.json"
    preds, problems = match_predictions(_predictions(ds), ls_data_root, {i["file_name"] for i in ds.images})
    assert not problems and len(preds) == 4

    first = push_dataset(ls_client, ds, ls_data_root, "roundtrip", predictions=preds, model_version="m-1", batch_size=4)
    assert (first.n_tasks_created, first.n_predictions_created) == (6, 4)
    again = push_dataset(ls_client, ds, ls_data_root, "roundtrip", predictions=preds, model_version="m-1")
    assert (again.n_tasks_created, again.n_tasks_existing, again.n_predictions_created, again.n_predictions_existing) == (0, 6, 0, 4)
    pid = first.project_id
    assert again.project_id == pid

    sdk = ls_client.sdk
    tasks = {image_key_from_task_data(t["data"]): t["id"] for t in ls_client.list_tasks(pid)}
    assert len(tasks) == 6
    stored = sdk.predictions.list(task=tasks[ds.images[0]["file_name"]])
    assert [p.model_version for p in stored] == ["m-1"] and stored[0].score == pytest.approx(0.6)  # min(polyp margin (0.8-0.5)/0.5, cecum (0.5-0.1)/0.5, box 0.66)
    # The served image URL works (local-files storage covers the folder).
    import httpx

    url = f"{ls_server.url}/data/local-files/?d=roundtrip/frame%2000.jpg"
    assert httpx.get(url, headers={"Authorization": f"Token {ls_server.token}"}).status_code == 200

    img0, img1, img2 = ds.images[:3]
    expected_box = [7.25, 3.5, 40.125, 20.75]
    sdk.annotations.create(id=tasks[img0["file_name"]], result=[
        box_to_result("resection-margin", expected_box, img0["width"], img0["height"]),
        choices_result("labels", ["dyed", "resection-margin"]), choices_result("inset", ["green"])])
    sdk.annotations.create(id=tasks[img1["file_name"]], result=[choices_result("labels", ["ileum"])])
    sdk.annotations.create(id=tasks[img2["file_name"]], result=[], was_cancelled=True)

    # img0's polyp box and label are replaced: taken only with "apply" (the default holds them for review)
    result = pull_project(ls_client, "roundtrip", ls_data_root, base_path=base, expert_changes="apply")
    assert result.path.name == "roundtrip.v2.coco.json" and base.exists()
    new, old = load_canonical(result.path), load_canonical(base)
    by = new.image_by_file
    assert by[img0["file_name"]]["labels"] == ["dyed", "resection-margin"]
    assert by[img0["file_name"]]["inset"] == "green"
    boxes0 = [a for a in new.annotations if a["image_id"] == by[img0["file_name"]]["id"]]
    assert [b["category_id"] for b in boxes0] == [2]
    assert boxes0[0]["bbox"] == pytest.approx(expected_box, abs=0.01)
    assert by[img1["file_name"]]["labels"] == ["ileum"]
    assert not [a for a in new.annotations if a["image_id"] == by[img1["file_name"]]["id"]]
    for img in ds.images[2:]:  # skipped / predictions-only / untouched: previous state
        assert by[img["file_name"]]["labels"] == old.image_by_file[img["file_name"]]["labels"]
    rep = result.report
    assert (rep.n_applied, rep.n_skipped, rep.n_not_exported, rep.n_tasks) == (2, 1, 3, 6)
    assert not rep.problems and not rep.conflicts
    assert rep.changes["labels_added"] == 3 and rep.changes["boxes_removed"] == 1  # img0's polyp box replaced

    # The same content pulled again from the same base: v2 holds it already, no duplicate v3.
    second = pull_project(ls_client, pid, ls_data_root, base_path=base, all_tasks=True, expert_changes="apply")
    assert second.path is None and second.same_as == result.path
    assert not (ls_data_root / "roundtrip.v3.coco.json").exists()
    assert (second.report.n_predictions_only, second.report.n_unlabeled) == (1, 2)


def test_cli_push_pull_keeps_the_key_out_of_files_and_logs(ls_server, ls_client, ls_data_root, tiny_dataset,
                                                            monkeypatch, capsys, caplog):
    from kvasir_ml.cli import main

    ds = tiny_dataset(ls_data_root, "clikey", n=3)
    preds = ls_data_root / "clikey.predictions.json"
    preds.write_text(json.dumps(_predictions(ds)[:2]))
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.token)
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    caplog.set_level(logging.DEBUG)
    base = ls_data_root / "clikey.coco.json"
    assert main(["-v", "ls", "push", str(base), "--project", "cli key", "--predictions", str(preds)]) == 0
    assert main(["ls", "push", str(base), "--project", "cli key", "--predictions", str(preds)]) == 0
    first_task = ls_client.list_tasks(find_project(ls_client, "cli key"))[0]["id"]
    ls_client.sdk.annotations.create(id=first_task, result=[choices_result("labels", ["ileum"]),
                                                            choices_result("inset", ["none"])])
    assert main(["ls", "pull", "--project", "cli key", "--base", str(base), "--save-export",
                 "--expert-changes", "apply"]) == 0
    out = capsys.readouterr()
    assert "tasks created 3" in out.out and "tasks created 0" in out.out and "clikey.v2.coco.json" in out.out
    written = [p for p in ls_data_root.glob("clikey*") if p.is_file()]
    assert any(p.name.endswith(".ls-export.json") for p in written)
    for path in written:
        assert ls_server.token not in path.read_text(errors="replace"), path
    assert ls_server.token not in out.out + out.err + caplog.text
    # A wrong key: a clear 401 error, and the wrong key is not echoed back either.
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "0" * 40)
    assert main(["ls", "pull", "--project", "cli key", "--base", str(base)]) == 2
    err = capsys.readouterr().err
    assert "401" in err and "0" * 40 not in err
