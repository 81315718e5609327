"""The review project: the top suspects in Label Studio, given labels and suggestion side by side.

Each of the top-k images (most likely error first) becomes a task through the normal push
(``labelstudio.sync.push_dataset``): the canonical file's labels are the pre-filled draft
(the *expert draft*, ``labelstudio.expert``, made the prelabeling model) and the suggested
correction is a separate prediction (``model_version`` ``review-suggestion``) the reviewer
can switch to. The draft's score is set to ``1 - suspect score`` so the project's
uncertainty sampling serves the most likely error first. The suggestion starts from the
given labels and applies every suspect of the image scoring at least ``min_score``: the
suggested label set, a spurious box removed, a badly placed box replaced by the predicted
one, a missing box added.

Corrections come back through the normal pull (``labelstudio.sync.pull_project``) as a new
canonical version; pull it with ``expert_changes="apply"`` (``kvasir-ml ls pull ...
--expert-changes apply``), because changing the given labels is the point of a review
project (the pull still lists every such task in its report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.geometry import iou_xywh_px

SUGGESTION_VERSION = "review-suggestion"
DEFAULT_MIN_SCORE = 0.5


@dataclass
class ReviewPush:
    project_id: int
    file_names: list[str]  # pushed, most likely error first
    expert_version: str
    push_lines: list[str]


def top_files(suspects: Sequence[dict[str, Any]], k: int) -> list[str]:
    """The first ``k`` distinct images of a ranked suspect list."""
    return list(dict.fromkeys(s["file_name"] for s in suspects))[:k]


def suggestion_entry(img: dict[str, Any], boxes: Sequence[tuple[str, list[float]]],
                     suspects: Sequence[dict[str, Any]], min_score: float = DEFAULT_MIN_SCORE) -> dict[str, Any]:
    """The suggested labeling of one image as a ``kvasir_ml.inference.combined``-style entry.

    Args:
        img: canonical image entry. boxes: its given boxes ``(class, xywh_px)``.
        suspects: this image's suspects; those under ``min_score`` are not applied.
    """
    labels = list(img.get("labels") or [])
    label_scores: dict[str, float] = {}
    kept: list[dict[str, Any]] = [{"class": c, "xywh_px": list(b), "score": 1.0} for c, b in boxes]
    for s in sorted(suspects, key=lambda s: -s["score"]):
        if s["score"] < min_score:
            continue
        if s["kind"] == "label":
            labels, label_scores = list(s["suggested"]), dict(s.get("label_scores") or {})
            continue
        given = s.get("given")
        match = next((b for b in kept if given and b["class"] == given["class"]
                      and iou_xywh_px(b["xywh_px"], given["xywh_px"]) > 0.99), None)
        if s["kind"] == "box-missing":
            kept.append(dict(s["suggested"]))
        elif match is not None:
            kept.remove(match)
            if s["kind"] != "box-spurious":  # placement / class: the suggested box replaces it
                kept.append(dict(s["suggested"], score=s["suggested"].get("score", 1.0)))
    return {"file_name": img["file_name"], "predicted_labels": labels,
            "labels": label_scores or {lab: 1.0 for lab in labels}, "boxes": kept,
            "inset": {"state": img.get("inset")}}


def _ordered_subset(ds: CanonicalDataset, file_names: Sequence[str]) -> CanonicalDataset:
    """``ds.subset`` in the given order (tasks are created in it: most likely error first)."""
    sub = ds.subset(file_names)
    rank = {f: i for i, f in enumerate(file_names)}
    sub.images.sort(key=lambda img: rank[img["file_name"]])
    return sub


def push_review(client: Any, suspects: Sequence[dict[str, Any]], canonical: str | Path, data_root: str | Path,
                project: str | int, top_k: int = 50, min_score: float = DEFAULT_MIN_SCORE) -> ReviewPush:
    """Push the top ``top_k`` suspect images into a review project (see the module docstring).

    Args:
        client: ``labelstudio.client.LSClient``.
        suspects: the ranked list ``review suspects`` wrote.
        canonical: the canonical file the suspects were computed on (its labels are the drafts).
        data_root: the images' folder (the server's document root).
        project: review project title or id (created when absent).

    Returns:
        What was pushed; ``push_lines`` is the push report.

    Raises:
        ValueError: a suspect names an image the canonical file does not have.
    """
    from kvasir_ml.labelstudio.expert import expert_version_for
    from kvasir_ml.labelstudio.sync import push_dataset, set_prelabeling_model

    ds = load_canonical(canonical)
    files = top_files(suspects, top_k)
    unknown = [f for f in files if f not in ds.image_by_file]
    if unknown:
        raise ValueError(f"{canonical}: the suspects name images it does not have, e.g. {unknown[:3]}; "
                         "were they computed on another file?")
    sub = _ordered_subset(ds, files)
    names = {c["id"]: c["name"] for c in ds.categories}
    boxes = sub.boxes_by_image()
    entries = {}
    for img in sub.images:
        mine = [s for s in suspects if s["file_name"] == img["file_name"]]
        given = [(names[b["category_id"]], list(b["bbox"])) for b in boxes.get(img["id"], [])]
        entries[img["file_name"]] = suggestion_entry(img, given, mine, min_score)
    version = expert_version_for(canonical)
    report = push_dataset(client, sub, data_root, project, predictions=entries, model_version=SUGGESTION_VERSION,
                          expert_version=version)
    set_prelabeling_model(client, report.project_id, version)
    worst = {f: max(s["score"] for s in suspects if s["file_name"] == f) for f in files}
    _rank_drafts(client, report.project_id, version, worst)
    return ReviewPush(report.project_id, files, version, report.summary_lines())


def _rank_drafts(client: Any, project_id: int, version: str, suspect_score: dict[str, float]) -> int:
    """Set each expert draft's score to ``1 - suspect score``: uncertainty sampling (lowest
    score first) then serves the most likely error first. Returns how many were updated."""
    from kvasir_ml.labelstudio.convert import ConvertError, image_key_from_task_data

    file_of = {}
    for task in client.list_tasks(project_id):
        try:
            file_of[int(task["id"])] = image_key_from_task_data(task["data"])
        except ConvertError:
            continue
    rows = client.call(f"list predictions of project {project_id}", client.sdk.predictions.list, project=project_id)
    n = 0
    for p in rows:
        name = file_of.get(int(p.task)) if p.task is not None else None
        if p.model_version == version and name in suspect_score:
            score = round(1.0 - suspect_score[name], 6)
            if p.score != score:
                client.call(f"update the score of draft {p.id}", client.sdk.predictions.update, id=p.id, score=score)
                n += 1
    return n

