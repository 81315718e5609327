"""Archive-scale pulls: streamed exports convert as the list does; an export whose create
answer is lost is found by its title and polled; the CLI's default wait is the library's."""

from __future__ import annotations

import json
import logging
from functools import partial

import pytest
from PIL import Image

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.labelstudio.convert import choices_result, image_url
from kvasir_ml.labelstudio.from_export import PackedPredictions, export_to_canonical, slim_task
from kvasir_ml.labelstudio.snapshot import DEFAULT_EXPORT_WAIT_S, download_snapshot, iter_export_file
from kvasir_ml.labelstudio.sync import find_project, push_dataset

W, H = 200, 100


def _task(tid, name, annotations=(), predictions=()):
    return {"id": tid, "data": {"image": image_url(name), "file_name": name}, "annotations": list(annotations),
            "predictions": list(predictions), "drafts": [], "meta": {"big": "x" * 100}}


def test_streamed_slim_export_converts_like_the_list(tmp_path):
    """Duplicate tasks of one image: the unannotated one's model draft (packed while streaming)
    still flags the other's unedited copy of it; every count and the dataset are the same."""
    (tmp_path / "imgs").mkdir()
    base = CanonicalDataset.new("synthetic")
    for i in range(3):
        Image.new("RGB", (W, H)).save(tmp_path / f"imgs/{i}.jpg")
        base.add_image(f"imgs/{i}.jpg", W, H, ["cecum"], "synthetic", "normal-cecum", inset="none")
    draft = {"model_version": "m1", "score": 0.4, "result": [choices_result("labels", ["polyp"])]}
    submitted = {"id": 9, "result": [choices_result("labels", ["polyp"])], "was_cancelled": False,
                 "updated_at": "2026-01-01T00:00:00Z", "completed_by": 1}
    tasks = [_task(1, "imgs/0.jpg", [submitted]), _task(2, "imgs/1.jpg", predictions=[draft]),
             _task(3, "imgs/0.jpg", predictions=[draft]), _task(4, "imgs/2.jpg")]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    slim = [slim_task(t) for t in iter_export_file(path)]
    assert isinstance(slim[1]["predictions"], PackedPredictions) and "meta" not in slim[1]
    convert = partial(export_to_canonical, data_root=tmp_path, base=base)
    want_ds, want = convert(tasks)
    got_ds, got = convert(iter(slim))
    assert got.to_dict() == want.to_dict()
    assert got_ds.images == want_ds.images
    assert [f.kind for f in got.expert_review] == ["model-draft"]  # found through task 3's packed draft
    assert (got.n_tasks, got.n_predictions_only, got.n_unlabeled, got.n_held_for_review) == (4, 1, 1, 1)


def test_export_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "cut.json"
    bad.write_text('[{"id": 1, "data": {}}, {"id": 2, "da')
    with pytest.raises(ValueError, match="cut.json is not valid JSON"):
        list(iter_export_file(bad))
    (tmp_path / "obj.json").write_text('"tasks"')
    with pytest.raises(ValueError, match="obj.json: a Label Studio JSON export is a list of tasks"):
        list(iter_export_file(tmp_path / "obj.json"))


def test_cli_default_export_wait_is_the_librarys():
    from kvasir_ml.cli import build_parser

    args = build_parser().parse_args(["ls", "pull", "--project", "p", "--base", "b.json"])
    assert args.export_wait_s == DEFAULT_EXPORT_WAIT_S


@pytest.mark.labelstudio
def test_export_whose_answer_is_lost_is_found_by_title_and_polled(ls_client, ls_data_root, tiny_dataset, tmp_path,
                                                                 caplog):
    ds = tiny_dataset(ls_data_root, "lostanswer", n=3)
    push_dataset(ls_client, ds, ls_data_root, "lost answer")
    pid = find_project(ls_client, "lost answer")
    exports = ls_client.sdk.projects.exports
    # The create request gives up long before the server answers (as a 100k export outlasts a
    # short client timeout); the server still builds it: it is found and downloaded, not made twice.
    with caplog.at_level(logging.INFO, logger="kvasir_ml.labelstudio.snapshot"):
        path = download_snapshot(ls_client, pid, tmp_path / "e.json", wait_s=120, create_timeout_s=0.005)
    assert "the create's answer was lost; polling it" in caplog.text
    assert sorted(t["data"]["file_name"] for t in iter_export_file(path)) == sorted(i["file_name"] for i in ds.images)
    assert exports.list(id=pid) == []  # the snapshot was deleted, and no second one was made
