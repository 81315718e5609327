"""Export -> canonical: policies, bad input (hand-made export JSON) and versioned output."""

from __future__ import annotations

import json
from functools import partial

import pytest
from PIL import Image

from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.labelstudio.convert import choices_result, image_url
from kvasir_ml.labelstudio.from_export import ExportError, load_export
from kvasir_ml.labelstudio.from_export import export_to_canonical as _export_to_canonical
from kvasir_ml.labelstudio.versions import next_version_path

# These tests check the conversion itself, so submissions replace the base labels (the expert-label
# guard, default "review", is tested in test_expert.py and test_expert_review.py).
export_to_canonical = partial(_export_to_canonical, expert_changes="apply")

W, H = 200, 100


def rect(cls="polyp", x=10.0, y=10.0, w=20.0, h=20.0, rotation=0, sizes=True, rid="r1"):
    r = {"id": rid, "type": "rectanglelabels", "from_name": "boxes", "to_name": "image",
         "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [cls]}}
    if sizes:
        r.update(original_width=W, original_height=H)
    return r


def labels(*names):
    return choices_result("labels", list(names))


def task(tid, name, *anns, predictions=()):
    return {"id": tid, "data": {"image": image_url(name), "file_name": name}, "annotations": list(anns),
            "predictions": list(predictions)}


def ann(aid, result, updated="2026-01-01T00:00:00Z", cancelled=False, user=1, gt=False):
    return {"id": aid, "result": result, "was_cancelled": cancelled, "updated_at": updated, "completed_by": user,
            "ground_truth": gt}


@pytest.fixture()
def root(tmp_path):
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        Image.new("RGB", (W, H)).save(tmp_path / f"imgs/{i}.jpg")
    return tmp_path


@pytest.fixture()
def base(root):
    ds = CanonicalDataset.new("synthetic")
    for i in range(4):
        iid = ds.add_image(f"imgs/{i}.jpg", W, H, ["cecum"], "synthetic", "normal-cecum", inset="green", inset_box=[0, 50, 40, 50])
    ds.add_box(iid, "resection-margin", [1, 1, 5, 5])
    return ds


def test_labels_boxes_and_taxonomy_class_ids(root, base):
    tasks = [task(1, "imgs/0.jpg", ann(11, [rect("resection-margin", 10, 20, 30, 40), rect("polyp", rid="r2"),
                                            labels("dyed", "polyp"), choices_result("inset", ["none"])]))]
    out, rep = export_to_canonical(tasks, root, base)
    img = out.image_by_file["imgs/0.jpg"]
    assert img["labels"] == ["polyp", "dyed", "resection-margin"]  # vocabulary order, implied label added
    assert img["inset"] == "none" and img["inset_box"] is None
    boxes = [a for a in out.annotations if a["image_id"] == img["id"]]
    assert [b["category_id"] for b in boxes] == [2, 1]  # taxonomy order, never alphabetical
    assert boxes[0]["bbox"] == pytest.approx([20, 20, 60, 40])
    assert rep.n_applied == 1 and not rep.problems
    assert out.image_by_file["imgs/1.jpg"]["labels"] == ["cecum"]  # untouched images keep their state
    assert rep.changes["labels_added"] == 3 and rep.changes["labels_removed"] == 1
    assert rep.changes["boxes_added"] == 2 and rep.changes["inset_changed"] == 1
    assert len(out.annotations) == 3  # the base box of imgs/3.jpg is kept


@pytest.mark.parametrize("result, kind, severity", [
    (rect(rotation=30), "bad-box", "error"),
    (rect(x=95, w=10), "box-clipped", "warning"),            # 50% inside: clipped
    (rect(x=98, w=10), "bad-box", "error"),                    # 20% inside: rejected
    (rect(x=-150, w=10), "bad-box", "error"),
    (rect("tumour"), "unknown-label", "error"),
    (labels("polyp", "unicorn"), "unknown-label", "error"),
    (choices_result("inset", ["purple"]), "unknown-inset", "error"),
    (rect(sizes=False), "no-size", "warning"),                 # falls back to the image's size
    ({"type": "textarea", "from_name": "notes", "value": {"text": ["hi"]}}, "unknown-result", "warning"),
    ("not a dict", "malformed-result", "error"),
])
def test_bad_regions_are_reported_and_do_not_stop_the_rest(root, base, result, kind, severity):
    good = task(2, "imgs/1.jpg", ann(21, [labels("polyp"), rect()]))
    out, rep = export_to_canonical([task(1, "imgs/0.jpg", ann(11, [result, labels("ileum")])), good], root, base)
    probs = [p for p in rep.problems if p.kind == kind]
    assert probs and probs[0].severity == severity and probs[0].task_id == 1 and probs[0].file_name == "imgs/0.jpg"
    assert "task 1" in str(probs[0])
    assert out.image_by_file["imgs/1.jpg"]["labels"] == ["polyp"]  # the other task is applied
    if severity == "error":
        assert out.image_by_file["imgs/0.jpg"]["labels"] == ["cecum"]  # previous state kept
        assert rep.n_failed == 1
    else:
        assert "ileum" in out.image_by_file["imgs/0.jpg"]["labels"]


def test_clipped_box_lies_inside_the_image(root, base):
    out, _ = export_to_canonical([task(1, "imgs/0.jpg", ann(1, [rect(x=95, w=10)]))], root, base)
    x, y, w, h = out.annotations[0]["bbox"]
    assert x + w <= W and w == pytest.approx(10)


def test_no_size_anywhere_is_an_error(tmp_path):
    tasks = [task(1, "imgs/0.jpg", ann(1, [rect(sizes=False)]))]
    out, rep = export_to_canonical(tasks)  # no data root, no base
    assert rep.errors and rep.errors[0].kind == "no-size" and not out.images


@pytest.mark.parametrize("data, message", [
    ({"image": "/data/local-files/?d=../../etc/passwd"}, "escapes"),
    ({"file_name": "imgs/missing.jpg"}, "not found"),
    ({"image": "https://example.org/x.jpg"}, "not a local-files URL"),
    (None, "no 'data'"),
])
def test_unresolvable_images(root, base, data, message):
    bad = {"id": 5, "data": data, "annotations": [ann(1, [labels("polyp")])]}
    out, rep = export_to_canonical([bad, task(2, "imgs/1.jpg", ann(2, [labels("ileum")]))], root, base)
    assert rep.errors[0].task_id == 5 and message in rep.errors[0].message
    assert out.image_by_file["imgs/1.jpg"]["labels"] == ["ileum"]


def test_malformed_export_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 1,, }]')
    with pytest.raises(ExportError, match=r"bad.json.*line 1"):
        load_export(bad)
    bad.write_text('{"not": "a list"}')
    with pytest.raises(ExportError, match="list of tasks"):
        load_export(bad)
    out, rep = export_to_canonical(["oops", 3])
    assert [p.kind for p in rep.problems] == ["malformed-task", "malformed-task"]


def test_policies_and_conflicts(root, base):
    a1 = ann(1, [labels("polyp"), rect()], updated="2026-01-01T00:00:00Z", user=7)
    a2 = ann(2, [labels("ileum")], updated="2026-02-01T00:00:00Z", user=8)
    skipped = ann(3, [], updated="2026-03-01T00:00:00Z", cancelled=True)
    tasks = [task(1, "imgs/0.jpg", a1, a2, skipped)]
    latest, rep = export_to_canonical(tasks, root, base)
    assert latest.image_by_file["imgs/0.jpg"]["labels"] == ["ileum"]
    assert len(rep.conflicts) == 1 and rep.conflicts[0].annotators == [7, 8]
    assert any("labels" in d for d in rep.conflicts[0].differences)
    earliest, _ = export_to_canonical(tasks, root, base, policy="earliest")
    assert earliest.image_by_file["imgs/0.jpg"]["labels"] == ["polyp"]
    gt, _ = export_to_canonical([task(1, "imgs/0.jpg", {**a1, "ground_truth": True}, a2)], root, base, policy="ground-truth")
    assert gt.image_by_file["imgs/0.jpg"]["labels"] == ["polyp"]
    unan, rep_u = export_to_canonical(tasks, root, base, policy="unanimous")
    assert unan.image_by_file["imgs/0.jpg"]["labels"] == ["cecum"] and rep_u.n_failed == 1
    same, rep_s = export_to_canonical([task(1, "imgs/0.jpg", a1, {**a2, "result": a1["result"]})], root, base, policy="unanimous")
    assert same.image_by_file["imgs/0.jpg"]["labels"] == ["polyp"] and not rep_s.conflicts


def test_skipped_predictions_only_and_new_images(root, base):
    tasks = [task(1, "imgs/0.jpg", ann(1, [], cancelled=True)),
             task(2, "imgs/1.jpg", predictions=[{"id": 9}]),
             task(3, "imgs/2.jpg")]
    keep, rep = export_to_canonical(tasks, root, base)
    assert (rep.n_skipped, rep.n_predictions_only, rep.n_unlabeled) == (1, 1, 1)
    assert keep.image_by_file["imgs/0.jpg"]["labels"] == ["cecum"]
    drop, rep_d = export_to_canonical(tasks, root, base, skipped="drop")
    assert "imgs/0.jpg" not in drop.image_by_file and rep_d.changes["images_removed"] == 1
    fresh, _ = export_to_canonical(tasks + [task(4, "imgs/3.jpg", ann(4, [labels("ileum")]))], root, None)
    assert [i["file_name"] for i in fresh.images] == ["imgs/3.jpg"]  # predictions never become ground truth
    assert fresh.images[0]["width"] == W  # size read from the image file


def test_next_version_path_never_returns_an_existing_file(tmp_path):
    base = tmp_path / "annotations.coco.json"
    base.write_text("{}")
    assert next_version_path(base).name == "annotations.v2.coco.json"
    (tmp_path / "annotations.v2.coco.json").write_text("{}")
    (tmp_path / "annotations.v7.coco.json").write_text("{}")
    assert next_version_path(base).name == "annotations.v8.coco.json"
    assert next_version_path(tmp_path / "annotations.v2.coco.json").name == "annotations.v8.coco.json"


def test_cli_convert_offline(root, base, capsys):
    from kvasir_ml.cli import main

    base.save(root / "base.coco.json")
    export = root / "export.json"
    export.write_text(json.dumps([task(1, "imgs/0.jpg", ann(1, [labels("polyp"), rect()])),
                                  task(2, "imgs/1.jpg", ann(2, [rect(rotation=10)]))]))
    out = root / "new.coco.json"
    rc = main(["ls", "convert", str(export), "--out", str(out), "--data-root", str(root), "--base", str(root / "base.coco.json"),
               "--expert-changes", "apply"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "task 2" in text and "rotated" in text
    new = load_canonical(out)
    assert new.image_by_file["imgs/0.jpg"]["labels"] == ["polyp"]
    assert json.loads((root / "new.coco.report.json").read_text())["n_errors"] == 1
    assert main(["ls", "convert", str(export), "--out", str(out), "--data-root", str(root), "--strict"]) == 1
    assert list(root.glob("new.coco.*.bak.json"))  # the earlier output was backed up, not lost


def test_unanimous_needs_the_same_boxes_not_only_the_same_labels(root, base):
    """Same labels, but the boxes disagree (moved: IoU < 0.5, or one annotator drew an extra box):
    `unanimous` applies nothing; boxes that match (IoU >= 0.5) are agreement."""
    first = ann(1, [labels("polyp"), rect(x=10.0)], updated="2026-01-01T00:00:00Z", user=7)
    moved = ann(2, [labels("polyp"), rect(x=60.0)], updated="2026-02-01T00:00:00Z", user=8)
    extra = ann(2, [labels("polyp"), rect(x=10.0), rect(x=60.0, rid="r2")], updated="2026-02-01T00:00:00Z", user=8)
    close = ann(2, [labels("polyp"), rect(x=11.0)], updated="2026-02-01T00:00:00Z", user=8)
    for other, what in ((moved, "not drawn by all"), (extra, "extra box")):
        out, rep = export_to_canonical([task(1, "imgs/0.jpg", first, other)], root, base, policy="unanimous")
        assert out.image_by_file["imgs/0.jpg"]["labels"] == ["cecum"] and rep.n_failed == 1  # base kept
        assert any(what in d for d in rep.conflicts[0].differences), rep.conflicts[0].differences
    out, rep = export_to_canonical([task(1, "imgs/0.jpg", first, close)], root, base, policy="unanimous")
    assert out.image_by_file["imgs/0.jpg"]["labels"] == ["polyp"] and rep.n_failed == 0
    assert len(out.boxes_by_image()[out.image_by_file["imgs/0.jpg"]["id"]]) == 1
