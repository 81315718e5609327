"""Expert labels in Label Studio: shown as the pre-filled draft at push, guarded at pull.

Push gives every task an *expert draft*: a prediction under ``model_version``
``canonical:<file stem>-<sha8>`` holding what the canonical file says about the image (labels,
boxes, inset). Made the project's prelabeling model, it is the draft annotators open and edit;
the model's prediction stays a separate tab. An image the canonical file has no labels or boxes
for gets the model's prediction as its draft (nothing expert to show), with the file's inset.

Pull compares each submitted annotation with the base file's entry (the expert labels it
would replace) and flags a submission that

* removes an expert label or box, relabels a box, changes the inset state, or moves a box
  (best-overlapping submitted box of the same class at IoU below ``MOVED_IOU``), or
* is an unedited model draft: identical to one of the task's model predictions (labels, inset,
  boxes within ``SAME_BOX_PX``) while differing from the expert labels.

Only adding findings or boxes is never flagged. ``review`` (default) keeps the base entry of a
flagged task and lists it; ``apply`` takes the submission and still lists it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence, cast

from kvasir_ml.geometry import Box, iou_xywh_px
from kvasir_ml.io import atomic_write_json, sha256_file
from kvasir_ml.labelstudio.labeling_config import INSET_NAME, LABELS_NAME
from kvasir_ml.labelstudio.convert import (
    ConvertError, Labeling, box_to_result, choices_result, image_key_from_task_data, labeling_from_results,
    prediction_from_combined,
)
from kvasir_ml.taxonomy import Taxonomy

EXPERT_PREFIX = "canonical:"
EXPERT_POLICIES = ("review", "apply")
# IoU 0.9 between two boxes of one object means each edge moved by about 5 % of the box size at
# most (one edge moved by 10 % of the width alone gives IoU 0.9): a touch-up passes, a re-placed
# box (the model boxes that replaced Kvasir-SEG boxes overlapped them at IoU 0.03-0.45) is named.
MOVED_IOU = 0.9
SAME_BOX_PX = 0.5  # an unedited draft comes back within float rounding of percent (<< 0.5 px)


def expert_version_for(canonical_path: str | Path) -> str:
    """``canonical:<file name without .coco.json>-<first 8 hex of its sha256>`` (one per file content)."""
    path = Path(canonical_path)
    stem = path.name.removesuffix(".json").removesuffix(".coco")
    return f"{EXPERT_PREFIX}{stem}-{sha256_file(path)[:8]}"


def is_expert_version(model_version: Any) -> bool:
    return isinstance(model_version, str) and model_version.startswith(EXPERT_PREFIX)


def labeling_of_image(img: dict[str, Any], boxes: Sequence[tuple[str, Sequence[float]]]) -> Labeling:
    """What the canonical file says about one image (``boxes``: ``(class name, xywh_px)``)."""
    return Labeling(labels=list(img.get("labels") or []), boxes=[(c, cast(Box, tuple(b))) for c, b in boxes],
                    inset=img.get("inset"))


def expert_prediction(expert: Labeling, width_px: int, height_px: int, version: str,
                      model_results: Sequence[dict[str, Any]] = (), score: float | None = None) -> dict[str, Any] | None:
    """The expert draft of one image as a Label Studio prediction (None when there is nothing to show).

    Args:
        model_results: the model's prediction results, the draft of an image without expert
            labels or boxes (the expert inset state still wins).
        score: the model's frame confidence, so the data manager's score column and uncertainty
            sampling (both read the prelabeling version's score) still rank by the model.
    """
    results: list[dict[str, Any]] = []
    if expert.labels or expert.boxes:
        results += [box_to_result(c, b, width_px, height_px, region_id=f"expert-box-{i}")
                    for i, (c, b) in enumerate(expert.boxes)]
        if expert.labels:
            results.append(choices_result(LABELS_NAME, expert.labels))
    else:
        results += [r for r in model_results if expert.inset is None or r.get("from_name") != INSET_NAME]
    if expert.inset is not None:
        results.append(choices_result(INSET_NAME, [expert.inset]))
    if not results:
        return None
    return {"model_version": version, "score": score, "result": results}


# ---- pull: what a submission does to the expert labels --------------------------------
def _fmt_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in box) + "]"


def expert_changes(expert: Labeling, submitted: Labeling, moved_iou: float = MOVED_IOU) -> list[str]:
    """What ``submitted`` removes, moves or relabels of ``expert`` (additions are not listed).

    Boxes are paired greedily, same class first, then by IoU (pairs that overlap at all);
    an expert box left without a partner was removed.
    """
    out = []
    removed = [n for n in expert.labels if n not in set(submitted.labels)]
    if removed:
        added = [n for n in submitted.labels if n not in set(expert.labels)]
        out.append(f"labels removed {removed}" + (f" (added {added})" if added else ""))
    if expert.inset is not None and submitted.inset is not None and submitted.inset != expert.inset:
        out.append(f"inset {expert.inset} -> {submitted.inset}")
    pairs = sorted(((ce == cs, iou, i, j) for i, (ce, be) in enumerate(expert.boxes)
                    for j, (cs, bs) in enumerate(submitted.boxes) if (iou := iou_xywh_px(be, bs)) > 0), reverse=True)
    used_e, used_s = set(), set()
    for same, iou, i, j in pairs:
        if i in used_e or j in used_s:
            continue
        used_e.add(i)
        used_s.add(j)
        cls, box = expert.boxes[i]
        if not same:
            out.append(f"{cls} box at {_fmt_box(box)} relabeled {submitted.boxes[j][0]} (IoU {iou:.2f})")
        elif iou < moved_iou:
            out.append(f"{cls} box at {_fmt_box(box)} moved to {_fmt_box(submitted.boxes[j][1])} (IoU {iou:.2f})")
    out += [f"{cls} box at {_fmt_box(box)} removed" for i, (cls, box) in enumerate(expert.boxes) if i not in used_e]
    return out


def same_labeling(submitted: Labeling, prediction: Labeling, tol_px: float = SAME_BOX_PX) -> bool:
    """True when ``submitted`` is ``prediction`` unchanged (its inset counts when it has one)."""
    if set(submitted.labels) != set(prediction.labels) or len(submitted.boxes) != len(prediction.boxes):
        return False
    if prediction.inset is not None and submitted.inset != prediction.inset:
        return False
    rest = list(prediction.boxes)
    for cls, box in submitted.boxes:
        hit = next((o for o in rest if o[0] == cls and all(abs(p - q) <= tol_px for p, q in zip(o[1], box))), None)
        if hit is None:
            return False
        rest.remove(hit)
    return True


def model_labelings(tasks: Sequence[dict[str, Any]], size_px: tuple[int, int], taxonomy: Taxonomy) -> list[Labeling]:
    """The model predictions (every version but the expert drafts) of an image's tasks, as exported
    with their content; predictions exported as ids only are skipped."""
    out = []
    for task in tasks:
        preds = task.get("predictions")
        for pred in preds if isinstance(preds, list) else []:
            if not isinstance(pred, dict) or is_expert_version(pred.get("model_version")):
                continue
            results = pred.get("result")
            if isinstance(results, list):
                labeling, problems = labeling_from_results(results, size_px, taxonomy)
                if not any(p.severity == "error" for p in problems):
                    out.append(labeling)
    return out


@dataclass
class ExpertFlag:
    """One task whose submission touches expert labels, or is an unedited model draft."""

    file_name: str
    task_id: Any
    annotation_id: Any
    annotator: Any
    kind: str  # "expert-change" | "model-draft"
    changes: list[str] = field(default_factory=list)
    action: str = ""  # "kept the expert labels" | "applied"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        what = "unedited model draft" if self.kind == "model-draft" else "changes expert labels"
        return (f"task {self.task_id} ({self.file_name}), annotation {self.annotation_id}: {what}: "
                f"{'; '.join(self.changes)} -> {self.action}")


def flag_submission(file_name: str, submitted: Labeling, ann: dict[str, Any], task_id: Any, expert: Labeling | None,
                    models: Sequence[Labeling]) -> ExpertFlag | None:
    """The flag of one chosen annotation against the base entry (``expert``) and the model predictions."""
    if expert is None:
        return None
    changes = expert_changes(expert, submitted)
    draft = not same_labeling(submitted, expert) and any(same_labeling(submitted, m) for m in models)
    if not changes and not draft:
        return None
    if draft:
        changes = ["identical to the model's prediction"] + changes
    return ExpertFlag(file_name, task_id, ann.get("id"), ann.get("completed_by"),
                      "model-draft" if draft else "expert-change", changes)


def review_path_for(base_path: str | Path) -> Path:
    """``X.coco.json`` -> ``X.expert-review.json`` beside it: the tasks held against that base."""
    base_path = Path(base_path)
    return base_path.with_name(base_path.name.removesuffix(".json").removesuffix(".coco") + ".expert-review.json")


def write_review_file(path: str | Path, flags: Sequence[ExpertFlag], policy: str, base: str | Path,
                      version: str | Path | None) -> Path:
    """The flagged tasks as JSON (atomic; a previous review file is kept as a backup)."""
    atomic_write_json(path, {"base": str(base), "version_written": str(version) if version else None,
                             "expert_changes": policy, "moved_iou": MOVED_IOU,
                             "tasks": [f.to_dict() for f in flags]}, keep_backup=True)
    return Path(path)


# ---- push: the expert drafts -------------------------------------------------------------
@dataclass
class ExpertPush:
    version: str
    n_created: int = 0
    n_existing: int = 0
    n_scores_updated: int = 0

    def summary_line(self) -> str:
        return (f"expert drafts {self.version}: created {self.n_created}, already there {self.n_existing}, "
                f"scores updated {self.n_scores_updated}")


def push_expert_drafts(client: Any, project_id: int, dataset: Any, version: str,
                       predictions: dict[str, dict[str, Any]] | None, taxonomy: Taxonomy,
                       batch_size: int = 1000) -> ExpertPush:
    """Give every task of the dataset its expert draft (idempotent: one per task and version).

    Args:
        client: ``LSClient``. dataset: the pushed ``CanonicalDataset`` (its tasks exist).
        predictions: the model entries pushed with it (``file_name -> entry``): their frame
            confidence becomes the draft's score (an existing draft's score is updated when a
            new model is pushed), and their results the draft of an image without expert labels.
    """
    report = ExpertPush(version)
    task_ids: dict[str, int] = {}
    for task in client.list_tasks(project_id):
        try:
            task_ids.setdefault(image_key_from_task_data(task["data"]), int(task["id"]))
        except ConvertError:
            continue
    rows = client.call(f"list predictions of project {project_id}", client.sdk.predictions.list, project=project_id)
    have = {int(p.task): (int(p.id), p.score) for p in rows if p.model_version == version and p.task is not None}
    names = {c["id"]: c["name"] for c in dataset.categories}
    boxes = dataset.boxes_by_image()
    new, updates = [], []
    for img in dataset.images:
        tid = task_ids.get(img["file_name"])
        if tid is None:
            continue
        entry = (predictions or {}).get(img["file_name"])
        model = prediction_from_combined(entry, img["width"], img["height"], version, taxonomy)[0] if entry else None
        score = model["score"] if model else None
        if tid in have:
            report.n_existing += 1
            if score is not None and have[tid][1] != score:
                updates.append((have[tid][0], score))
            continue
        expert = labeling_of_image(img, [(names[b["category_id"]], b["bbox"]) for b in boxes.get(img["id"], [])])
        draft = expert_prediction(expert, img["width"], img["height"], version, model["result"] if model else (), score)
        if draft is not None:
            new.append({"task": tid, **draft})
    for start in range(0, len(new), batch_size):
        batch = new[start:start + batch_size]
        client.post_json(f"import {len(batch)} expert drafts into project {project_id}",
                         f"api/projects/{project_id}/import/predictions", batch)
        report.n_created += len(batch)
    for pred_id, score in updates:  # a new model's confidence ranks the queue
        client.call(f"update the score of expert draft {pred_id}", client.sdk.predictions.update, id=pred_id, score=score)
        report.n_scores_updated += 1
    return report
