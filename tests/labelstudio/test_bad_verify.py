"""Bad input to the verification workflow: each is named, none becomes a vote or a verified label."""

from __future__ import annotations

import uuid

import pytest

from kvasir_ml.labelstudio.client import LabelStudioError
from kvasir_ml.labelstudio.convert import box_to_result, choices_result, image_url
from kvasir_ml.labelstudio.verify import create_verification_project, question_name
from kvasir_ml.labelstudio.verify_answers import collect_answers, resolve_image
from kvasir_ml.taxonomy import load_taxonomy

TAX = load_taxonomy()
SIZES = {"v/a.jpg": (100, 80)}


def _task(tid, key, *annotations):
    return {"id": tid, "data": {"image": image_url(key)}, "annotations": list(annotations)}


def _ann(aid, who, result, updated="2026-12-01T10:00:00Z", **extra):
    return {"id": aid, "completed_by": who, "result": result, "updated_at": updated, **extra}


def test_malformed_answers_never_vote_and_are_named():
    rotated = box_to_result("polyp", [10, 10, 20, 20], 100, 80)
    rotated["value"]["rotation"] = 30
    tasks = [_task(1, "v/a.jpg",
                   _ann(11, 1, [choices_result(question_name("polyp"), ["maybe"])]),
                   _ann(12, 2, [choices_result(question_name("polyp"), ["yes", "no"])]),
                   _ann(13, 3, [choices_result(question_name("tumour"), ["yes"])]),
                   _ann(14, 4, [choices_result(question_name("polyp"), ["yes"]), rotated]),
                   _ann(15, 5, [choices_result(question_name("polyp"), ["no"])], was_cancelled=True)),
             _task(2, "v/not-in-base.jpg", _ann(21, 1, [choices_result(question_name("polyp"), ["yes"])]))]
    answers, problems = collect_answers(tasks, SIZES, TAX)
    assert answers == {}  # four unusable answers and a skip: no annotator voted
    assert [(p.task_id, p.kind) for p in problems] == [(1, "bad-answer")] * 3 + [(1, "bad-box"), (2, "unknown-image")]
    assert all(p.severity == "error" for p in problems)
    assert "'maybe'" in problems[0].message and "has-tumour" in problems[2].message
    assert problems[0].file_name == "v/a.jpg" and "not-in-base.jpg" in problems[4].message


def test_one_annotator_submitting_twice_is_one_vote_the_latest():
    def yes(polyp):
        return [choices_result(question_name(label), ["yes" if label == "polyp" and polyp else "no"])
                for label in TAX.label_names]
    tasks = [_task(1, "v/a.jpg", _ann(11, 1, yes(True), "2026-12-01T10:00:00Z"),
                   _ann(12, 1, yes(False), "2026-12-02T10:00:00Z"), _ann(13, 2, yes(True)))]
    answers, problems = collect_answers(tasks, SIZES, TAX)
    assert not problems and len(answers["v/a.jpg"]) == 2
    res = resolve_image("v/a.jpg", answers["v/a.jpg"], TAX)
    assert res.open_labels == ["polyp"]  # 1 (latest: no) vs 2 (yes): a tie, not a 2-1 majority


def test_an_unanswered_question_is_open_not_no():
    partial = [choices_result(question_name("polyp"), ["yes"])]
    tasks = [_task(1, "v/a.jpg", _ann(11, 1, partial), _ann(12, 2, partial))]
    answers, _ = collect_answers(tasks, SIZES, TAX)
    res = resolve_image("v/a.jpg", answers["v/a.jpg"], TAX)
    assert res.labels == {"polyp": True} and set(res.open_labels) == set(TAX.label_names) - {"polyp"}


@pytest.mark.labelstudio
def test_create_refuses_a_project_of_another_workflow(ls_client, ls_data_root, tiny_dataset):
    ds = tiny_dataset(ls_data_root, "badverify", n=2)
    title = f"not-a-verification-{uuid.uuid4().hex[:6]}"
    ls_client.sdk.projects.create(title=title, label_config='<View><Image name="image" value="$image"/></View>')
    with pytest.raises(LabelStudioError, match=f"project '{title}'.*another labeling config"):
        create_verification_project(ls_client, ds.images, ls_data_root, title)
    with pytest.raises(ValueError, match="at least 2 annotators"):
        create_verification_project(ls_client, ds.images, ls_data_root, f"{title}-b", annotators=1)
    assert ls_client.find_projects(f"{title}-b") == []  # refused before anything was created
