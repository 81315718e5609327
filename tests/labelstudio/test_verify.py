"""Verification workflow end to end against the real Label Studio server.

create (stratified sample, overlap settings, no pre-fill) -> two annotators (real users made
through the API) answer through the API -> pull: per-label Cohen's kappa equals sklearn's on
the same answers, ties stay open, consensus boxes, provenance -> adjudication project ->
pull again: the ties are settled, written as the next version; the base is never touched.
"""

from __future__ import annotations

import random
import uuid

import pytest
from sklearn.metrics import cohen_kappa_score

from kvasir_ml.cli import main as cli_main
from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.splits import Split
from kvasir_ml.io import sha256_file
from kvasir_ml.labelstudio.convert import box_to_result, choices_result, image_key_from_task_data
from kvasir_ml.labelstudio.verify import (
    NO, OPEN_KEY, YES, create_verification_project, question_name, sample_from_split,
)
from kvasir_ml.labelstudio.verify_pull import create_adjudication_project, pull_verification
from kvasir_ml.taxonomy import load_taxonomy

pytestmark = pytest.mark.labelstudio
TAX = load_taxonomy()


def _result(answers: dict[str, bool], boxes, img) -> list[dict]:
    out = [choices_result(question_name(label), [YES if yes else NO]) for label, yes in answers.items()]
    return out + [box_to_result(cls, box, img["width"], img["height"]) for cls, box in boxes]


def _answers(rng: random.Random) -> dict[str, bool]:
    return {label: rng.random() < 0.35 for label in TAX.label_names}


def test_verification_create_pull_adjudicate(ls_client, ls_server, ls_data_root, tiny_dataset, monkeypatch, capsys):
    ds = tiny_dataset(ls_data_root, "verify", n=8)
    base = ls_data_root / "verify.coco.json"
    names = [img["file_name"] for img in ds.images]
    split = Split(seed=0, method="manual", fractions=None, canonical_sha256="",
                  splits={"train": [], "val": names[:2], "test": names[2:]})
    assert {i["file_name"] for i in sample_from_split(ds, split, 100)} == set(names[2:])  # test only by default
    sample = sample_from_split(ds, split, 100, ("test", "val"))
    title = f"verify-e2e-{uuid.uuid4().hex[:6]}"
    created = create_verification_project(ls_client, sample, ls_data_root, title, annotators=2)
    assert created.created_project and created.n_tasks_created == 8
    again = create_verification_project(ls_client, sample, ls_data_root, title, annotators=2)
    assert (again.project_id, again.n_tasks_created, again.n_tasks_existing) == (created.project_id, 0, 8)

    sdk, pid = ls_client.sdk, created.project_id
    project = sdk.projects.get(id=pid)
    assert (project.maximum_annotations, project.overlap_cohort_percentage) == (2, 100)
    tasks = {image_key_from_task_data(t["data"]): t for t in ls_client.list_tasks(pid)}
    assert all(set(t["data"]) == {"image"} for t in tasks.values())  # no labels, class or file name shown
    assert list(sdk.predictions.list(project=pid)) == []  # no model pre-fill

    tag = uuid.uuid4().hex[:6]
    users = [sdk.users.create(username=f"ann-{k}-{tag}", email=f"ann-{k}-{tag}@example.org") for k in "ab"]
    rng = random.Random(7)
    by_file = ds.image_by_file
    imgs = [by_file[n] for n in names]
    a_answers = [_answers(rng) for _ in imgs]
    b_answers = [dict(a) for a in a_answers]
    b_answers[0]["polyp"] = not a_answers[0]["polyp"]  # image 0: tie on a label
    b_answers[1]["dyed"] = not a_answers[1]["dyed"]  # image 1: tie on another label
    for answers in (a_answers[2], b_answers[2], a_answers[3], b_answers[3]):
        answers["polyp"] = True
    box_a, box_b = [10.0, 8.0, 40.0, 30.0], [12.0, 9.0, 40.0, 30.0]  # IoU ~0.86: the same polyp
    a_boxes = [[] for _ in imgs]
    b_boxes = [[] for _ in imgs]
    a_boxes[2] = [("polyp", box_a)]  # image 2: only one annotator drew a box -> a tied box
    a_boxes[3], b_boxes[3] = [("polyp", box_a)], [("polyp", box_b)]  # image 3: consensus box
    for k, img in enumerate(imgs):
        tid = tasks[img["file_name"]]["id"]
        sdk.annotations.create(id=tid, result=_result(a_answers[k], a_boxes[k], img), completed_by=users[0].id)
        sdk.annotations.create(id=tid, result=_result(b_answers[k], b_boxes[k], img), completed_by=users[1].id)
    base_sha = sha256_file(base)

    first = pull_verification(ls_client, title, base)
    report = first.report
    assert first.path.name == "verify.v2.coco.json" and sha256_file(base) == base_sha
    for label in TAX.label_names:  # kappa equals sklearn's on the same answers, computed here
        a = [int(x[label]) for x in a_answers]
        b = [int(x[label]) for x in b_answers]
        got = report["agreement"]["labels"][label]
        assert got["method"] == "cohen_kappa" and got["n_images"] == 8
        if len(set(a + b)) > 1:
            assert got["value"] == pytest.approx(cohen_kappa_score(a, b, labels=[0, 1]))
        else:
            assert got["value"] is None
    assert report["agreement"]["labels"]["polyp"]["raw_agreement"] == pytest.approx(7 / 8)
    boxes = report["agreement"]["boxes"]["polyp"]
    assert (boxes["n_boxes"], boxes["n_matched"]) == (3, 1)
    assert {o["file_name"]: (o["labels"], o["boxes"]) for o in report["open"]} == {
        names[0]: (["polyp"], []), names[1]: (["dyed"], []), names[2]: ([], ["polyp"])}
    assert report["n_verified"] == 5

    v2 = load_canonical(first.path)
    img3 = v2.image_by_file[names[3]]
    assert img3["labels"] == [n for n in TAX.label_names if a_answers[3][n]]
    assert img3["verified"]["previous_labels"] == by_file[names[3]]["labels"]
    assert {a["id"] for a in img3["verified"]["annotators"]} == {u.id for u in users}
    assert {a["name"] for a in img3["verified"]["annotators"]} == {u.email for u in users}
    assert img3["verified"]["project_id"] == pid and img3["verified"]["annotated_at"]
    (consensus,) = v2.boxes_by_image()[img3["id"]]
    assert consensus["bbox"] == pytest.approx([11.0, 8.5, 40.0, 30.0], abs=0.02)
    assert "verified" not in v2.image_by_file[names[0]]  # a tie leaves the image as it was
    assert v2.image_by_file[names[0]]["labels"] == by_file[names[0]]["labels"]

    adj_title = f"{title} (adjudication)"
    adj_pid, n_new = create_adjudication_project(ls_client, report["open"], ls_data_root, adj_title)
    assert n_new == 3
    adj_tasks = {image_key_from_task_data(t["data"]): t for t in ls_client.list_tasks(adj_pid)}
    assert adj_tasks[names[0]]["data"][OPEN_KEY] == "polyp" and adj_tasks[names[2]]["data"][OPEN_KEY] == "polyp boxes"
    adjudicator = sdk.users.create(username=f"adj-{tag}", email=f"adj-{tag}@example.org")
    settle0 = {**a_answers[0], "polyp": True}
    sdk.annotations.create(id=adj_tasks[names[0]]["id"], result=_result(settle0, [], imgs[0]), completed_by=adjudicator.id)
    sdk.annotations.create(id=adj_tasks[names[2]]["id"], result=_result(a_answers[2], [("polyp", box_b)], imgs[2]),
                           completed_by=adjudicator.id)

    second = pull_verification(ls_client, title, base, adjudication=adj_title)
    assert second.path.name == "verify.v3.coco.json" and first.path.exists() and sha256_file(base) == base_sha
    assert (second.report["n_verified"], second.report["n_adjudicated"]) == (7, 2)
    assert [o["file_name"] for o in second.report["open"]] == [names[1]]
    v3 = load_canonical(second.path)
    img0, img2 = v3.image_by_file[names[0]], v3.image_by_file[names[2]]
    assert "polyp" in img0["labels"] and img0["verified"]["adjudicated"] == ["polyp"]
    assert img0["verified"]["disagreed"] == ["polyp"] and img0["verified"]["adjudication_project_id"] == adj_pid
    assert img2["verified"]["adjudicated"] == ["box:polyp"]
    assert [b["bbox"] for b in v3.boxes_by_image()[img2["id"]]] == [pytest.approx(box_b, abs=0.02)]

    # the CLI, with no new answers: the same version again, nothing written, no duplicate task
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.token)
    capsys.readouterr()
    assert cli_main(["verify", "pull", "--project", title, "--base", str(base), "--adjudicate", "--url", ls_server.url,
                     "--data-root", str(ls_data_root)]) == 0
    out = capsys.readouterr().out
    assert "nothing written" in out and "0 new task(s)" in out and "cohen_kappa" in out
    assert not base.with_name("verify.v4.coco.json").exists()
