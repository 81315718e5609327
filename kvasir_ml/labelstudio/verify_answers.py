"""Verified ground truth, part 2: read the annotators' answers and resolve them per image.

Pure functions over exported tasks (``verify_pull`` fetches them). One annotator's answer is
the latest non-cancelled annotation they submitted for the image; answers of annotators
who never touched an image are missing, not "no".

Resolution of one image (``resolve_image``), documented in docs/labelstudio.md:

* a label is what the majority of the annotators answered; a tie (1 yes, 1 no) is open;
* a box is kept when more than half of the annotators drew a matching one (same class,
  IoU >= ``iou_threshold``), as the mean of the matched boxes; a box drawn by exactly half of
  them is open; a consensus box whose label the majority answered "no" opens that label;
* an adjudicator's answer (the adjudication project) settles the open labels and box classes
  of its image; nothing else of the majority changes;
* an image is verified when it has >= ``min_annotators`` answers and nothing is open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from kvasir_ml.evaluation.agreement import DEFAULT_IOU, Box, consensus_boxes, majority
from kvasir_ml.labelstudio.convert import (
    ConvertError, Problem, annotation_time, image_key_from_task_data, labeling_from_results,
)
from kvasir_ml.labelstudio.verify import NO, QUESTION_PREFIX, YES
from kvasir_ml.taxonomy import Taxonomy


@dataclass
class Answer:
    """What one annotator said about one image."""

    annotator: Any  # Label Studio user id (completed_by)
    annotation_id: Any
    task_id: Any
    updated_at: str
    labels: dict[str, bool] = field(default_factory=dict)  # label -> yes/no; unanswered labels are absent
    boxes: dict[str, list[Box]] = field(default_factory=dict)  # box class -> boxes (xywh px)


@dataclass
class Resolution:
    """The resolved state of one image."""

    file_name: str
    answers: list[Answer]
    labels: dict[str, bool] = field(default_factory=dict)
    boxes: dict[str, list[Box]] = field(default_factory=dict)
    open_labels: list[str] = field(default_factory=list)
    open_boxes: list[str] = field(default_factory=list)  # box classes with a tied box
    adjudicated: list[str] = field(default_factory=list)  # labels and "box:<class>" an adjudicator settled
    unanimous_share: float | None = None  # labels every annotator answered alike / labels answered

    @property
    def is_open(self) -> bool:
        return bool(self.open_labels or self.open_boxes)


def answer_from_annotation(ann: dict[str, Any], task_id: Any, size_px: tuple[int, int],
                           taxonomy: Taxonomy) -> tuple[Answer, list[Problem]]:
    """One annotation's yes/no answers and boxes (boxes converted as on the main page)."""
    results = ann["result"] if isinstance(ann.get("result"), list) else []
    answer = Answer(annotator=_annotator(ann), annotation_id=ann.get("id"), task_id=task_id,
                    updated_at=str(ann.get("updated_at") or ann.get("created_at") or ""))
    problems: list[Problem] = []
    rectangles = []
    for result in results:
        name = result.get("from_name", "") if isinstance(result, dict) else ""
        if isinstance(name, str) and name.startswith(QUESTION_PREFIX):
            label = name[len(QUESTION_PREFIX):]
            choices = (result.get("value") or {}).get("choices") if isinstance(result.get("value"), dict) else None
            if label not in taxonomy.label_names or choices not in ([YES], [NO]):
                problems.append(Problem(task_id, "bad-answer", f"question {name!r} answered {choices!r}; expected "
                                        f"[{YES!r}] or [{NO!r}] for a taxonomy label"))
                continue
            answer.labels[label] = choices == [YES]
        else:
            rectangles.append(result)
    labeling, box_problems = labeling_from_results(rectangles, size_px, taxonomy, task_id)
    problems += box_problems
    for cls, box in labeling.boxes:
        answer.boxes.setdefault(cls, []).append(box)
    return answer, problems


def _annotator(ann: dict[str, Any]) -> Any:
    who = ann.get("completed_by")
    return who.get("id", who.get("email")) if isinstance(who, dict) else who


def collect_answers(tasks: Sequence[dict[str, Any]], sizes: dict[str, tuple[int, int]],
                    taxonomy: Taxonomy) -> tuple[dict[str, list[Answer]], list[Problem]]:
    """``{file_name: [one Answer per annotator]}`` from exported tasks.

    Args:
        sizes: ``file_name -> (width, height)`` of the base canonical file; a task whose image
            is not in it is reported and left out.
    """
    out: dict[str, dict[Any, Answer]] = {}
    problems: list[Problem] = []
    for task in tasks:
        tid = task.get("id") if isinstance(task, dict) else None
        try:
            key = image_key_from_task_data(task["data"] if isinstance(task.get("data"), dict) else {})
        except ConvertError as exc:
            problems.append(Problem(tid, "unresolvable-image", str(exc)))
            continue
        if key not in sizes:
            problems.append(Problem(tid, "unknown-image", f"image {key!r} is not in the base canonical file", "error", key))
            continue
        for ann in task.get("annotations") or []:
            if not isinstance(ann, dict) or ann.get("was_cancelled"):
                continue
            answer, found = answer_from_annotation(ann, tid, sizes[key], taxonomy)
            for p in found:
                p.file_name = key
            problems += found
            if any(p.severity == "error" for p in found):
                continue  # a half-read answer never votes
            seen = out.setdefault(key, {}).get(answer.annotator)
            if seen is None or ((annotation_time(answer.updated_at), str(answer.annotation_id))
                                > (annotation_time(seen.updated_at), str(seen.annotation_id))):
                out[key][answer.annotator] = answer
    return {k: list(v.values()) for k, v in out.items()}, problems


def resolve_image(file_name: str, answers: Sequence[Answer], taxonomy: Taxonomy,
                  adjudication: Answer | None = None, iou_threshold: float = DEFAULT_IOU) -> Resolution:
    """Majority labels and consensus boxes of one image, ties settled by ``adjudication``."""
    res = Resolution(file_name=file_name, answers=list(answers))
    unanimous = answered = 0
    for label in taxonomy.label_names:
        votes = [a.labels[label] for a in answers if label in a.labels]
        if not votes:  # nobody answered it: open, never a silent "no"
            res.open_labels.append(label)
            continue
        answered += 1
        unanimous += len(set(votes)) == 1
        decided = majority(votes)
        if decided is None:
            res.open_labels.append(label)
        else:
            res.labels[label] = decided
    res.unanimous_share = unanimous / answered if answered else None
    for box_class in taxonomy.box_class_names:
        kept, ties = consensus_boxes({a.annotator: a.boxes.get(box_class, []) for a in answers}, iou_threshold)
        if ties:
            res.open_boxes.append(box_class)
        res.boxes[box_class] = kept
    for box in taxonomy.box_classes:  # a consensus box contradicting a majority "no" on its label
        if res.boxes[box.name] and res.labels.get(box.label) is False:
            res.labels.pop(box.label)
            res.open_labels.append(box.label)
    if adjudication is not None:
        _apply_adjudication(res, adjudication)
    return res


def _apply_adjudication(res: Resolution, adj: Answer) -> None:
    for label in list(res.open_labels):
        if label in adj.labels:
            res.labels[label] = adj.labels[label]
            res.open_labels.remove(label)
            res.adjudicated.append(label)
    for box_class in list(res.open_boxes):
        res.boxes[box_class] = list(adj.boxes.get(box_class, []))
        res.open_boxes.remove(box_class)
        res.adjudicated.append(f"box:{box_class}")
