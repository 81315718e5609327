"""A Label Studio JSON export (list of tasks) -> a new canonical file, with a report.

Rules (documented in docs/labelstudio.md):

* The image of a task is its ``data.file_name`` (or the local-files URL), relative to the
  data root; it must resolve inside the data root (no ``../`` escapes).
* Several annotations for one image (one task annotated twice, or duplicate tasks): the
  ``policy`` picks one — ``latest`` (default: newest ``updated_at`` among non-cancelled),
  ``earliest``, ``ground-truth`` (an annotation flagged ground truth, else the latest) or
  ``unanimous`` (apply only when all annotators agree). Disagreements are reported as
  conflicts whatever the policy.
* Cancelled (skipped) annotations never count. An image with only skipped annotations
  keeps its previous state (``skipped="keep"``) or leaves the file (``skipped="drop"``).
* Predictions are never ground truth: predictions-only and unlabeled tasks keep the image's
  previous state; images not in the base file are left out.
* A task whose chosen annotation has an error (see convert.py) keeps its previous state;
  the problem is reported and the rest of the export is still converted.
* A chosen annotation that removes, moves or relabels the base file's (expert) labels, or that
  is an unedited model draft, is flagged (``expert.py``): ``expert_changes="review"`` (default)
  keeps the base entry and lists the task, ``"apply"`` takes it and lists it.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.images import ImageError, image_size
from kvasir_ml.geometry import iou_xywh_px
from kvasir_ml.io import read_json
from kvasir_ml.labelstudio.convert import (
    ConvertError, Labeling, Problem, annotation_time, image_key_from_task_data, labeling_from_results, resolve_in_root,
    result_size,
)
from kvasir_ml.labelstudio.expert import EXPERT_POLICIES, ExpertFlag, flag_submission, labeling_of_image, model_labelings
from kvasir_ml.labelstudio.versions import diff_canonical
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

POLICIES = ("latest", "earliest", "ground-truth", "unanimous")
SKIPPED_POLICIES = ("keep", "drop")


class ExportError(ValueError):
    """The export as a whole is unusable (not JSON, not a list of tasks)."""


@dataclass
class Conflict:
    file_name: str
    task_ids: list[Any]
    annotation_ids: list[Any]
    annotators: list[Any]
    differences: list[str]
    resolution: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ConvertReport:
    n_tasks: int = 0
    n_applied: int = 0
    n_skipped: int = 0
    n_predictions_only: int = 0
    n_unlabeled: int = 0
    n_failed: int = 0
    n_not_exported: int = 0  # tasks without annotations left out of the export (pull default)
    n_held_for_review: int = 0  # submissions that touch expert labels, not applied (expert_changes="review")
    expert_changes: str = "review"
    expert_review: list[ExpertFlag] = field(default_factory=list)  # flagged submissions (held or applied)
    skipped_task_ids: list[Any] = field(default_factory=list)  # only skipped (cancelled) annotations
    rejected_task_ids: list[Any] = field(default_factory=list)  # not applied because of errors: redo them
    deleted: list[dict[str, Any]] = field(default_factory=list)  # base images without a task (pull only)
    problems: list[Problem] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        counts = {k: getattr(self, k) for k in ("n_tasks", "n_applied", "n_skipped", "n_predictions_only", "n_unlabeled",
                                                "n_failed", "n_not_exported", "n_held_for_review")}
        return {**counts, "skipped_task_ids": self.skipped_task_ids, "rejected_task_ids": self.rejected_task_ids,
                "deleted": self.deleted, "expert_changes": self.expert_changes,
                "expert_review": [f.to_dict() for f in self.expert_review],
                "n_errors": len(self.errors), "n_warnings": len(self.problems) - len(self.errors),
                "problems": [p.to_dict() for p in self.problems], "conflicts": [c.to_dict() for c in self.conflicts],
                "changes": self.changes}

    def summary_lines(self, max_items: int = 20) -> list[str]:
        c = self.changes
        lines = [
            f"tasks {self.n_tasks}: applied {self.n_applied}, skipped {self.n_skipped}, predictions-only "
            f"{self.n_predictions_only}, unlabeled {self.n_unlabeled}, failed {self.n_failed}"
            + (f", without annotations (not exported) {self.n_not_exported}" if self.n_not_exported else "")
            + (f", held for expert review {self.n_held_for_review}" if self.n_held_for_review else ""),
            f"images +{c.get('images_added', 0)} -{c.get('images_removed', 0)} (changed {c.get('images_changed', 0)}); "
            f"labels +{c.get('labels_added', 0)} -{c.get('labels_removed', 0)}; boxes +{c.get('boxes_added', 0)} "
            f"-{c.get('boxes_removed', 0)}; inset changed {c.get('inset_changed', 0)}",
            f"conflicts between annotators: {len(self.conflicts)}; problems: {len(self.errors)} errors, "
            f"{len(self.problems) - len(self.errors)} warnings",
        ]
        for what, ids in (("skipped", self.skipped_task_ids), ("rejected (redo them)", self.rejected_task_ids)):
            if ids:
                lines.append(f"{what} tasks ({len(ids)}): {_id_list(ids, max_items)}")
        if self.deleted:
            shown = [f"{d['file_name']} (task {d['task_id']})" if d.get("task_id") else d["file_name"]
                     for d in self.deleted[:max_items]]
            lines.append(f"images of the base file without a task (deleted in Label Studio, or never pushed) "
                         f"({len(self.deleted)}): {', '.join(shown)}" + (" ..." if len(self.deleted) > max_items else ""))
        if self.expert_review:
            held = self.expert_changes == "review"
            lines.append(f"submissions that change expert labels or copy a model draft ({len(self.expert_review)}): "
                         + ("expert labels kept (--expert-changes review); look at them, then pull with "
                            "--expert-changes apply to take them" if held else "applied (--expert-changes apply)"))
            lines += [f"  {f}" for f in self.expert_review[:max_items]]
            if len(self.expert_review) > max_items:
                lines.append(f"  ... {len(self.expert_review) - max_items} more in the review file")
        lines += [f"  conflict {k.file_name} (tasks {k.task_ids}): {'; '.join(k.differences)} -> {k.resolution}"
                  for k in self.conflicts[:max_items]]
        lines += [f"  {p}" for p in self.problems[:max_items]]
        if len(self.problems) > max_items:
            lines.append(f"  ... {len(self.problems) - max_items} more problems in the report file")
        return lines


def _id_list(ids: list[Any], max_items: int) -> str:
    return ", ".join(map(str, ids[:max_items])) + (f" ... (+{len(ids) - max_items})" if len(ids) > max_items else "")


def load_export(path: str | Path) -> list[dict[str, Any]]:
    """Read a Label Studio JSON export (list-of-tasks format).

    Raises:
        ExportError: malformed JSON or not a list, naming the file.
    """
    try:
        raw = read_json(path)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    return tasks_from_export(raw, str(path))


class PackedPredictions(bytes):
    """The predictions of a task without annotations, kept compressed while a large export streams
    by (~1/10 of the parsed size). Truthy like the list it stands for; ``unpack()`` gives the list."""

    def unpack(self) -> list[Any]:
        return json.loads(zlib.decompress(self))


def slim_task(task: Any) -> Any:
    """What the conversion reads of an exported task (id, data, annotations, predictions); the
    predictions of a task nobody annotated packed (they matter only when another task of the same
    image has a submission to compare with the model drafts)."""
    if not isinstance(task, dict):
        return task
    out = {k: task[k] for k in ("id", "data", "annotations", "predictions") if k in task}
    preds = out.get("predictions")
    if not out.get("annotations") and isinstance(preds, list) and preds:
        out["predictions"] = PackedPredictions(zlib.compress(json.dumps(preds, separators=(",", ":")).encode(), 1))
    return out


def _unpacked(task: Any) -> Any:
    preds = task.get("predictions") if isinstance(task, dict) else None
    return {**task, "predictions": preds.unpack()} if isinstance(preds, PackedPredictions) else task


def tasks_from_export(raw: Any, origin: str = "<export>") -> list[dict[str, Any]]:
    if isinstance(raw, dict) and isinstance(raw.get("tasks"), list):
        raw = raw["tasks"]
    if not isinstance(raw, list):
        raise ExportError(f"{origin}: a Label Studio JSON export is a list of tasks, got {type(raw).__name__}")
    return raw


# ---- choosing among annotations --------------------------------------------------------
def _stamp(ann: dict[str, Any]) -> tuple[datetime, datetime, int]:
    ann_id = ann.get("id")
    return (annotation_time(ann.get("updated_at")), annotation_time(ann.get("created_at")),
            ann_id if isinstance(ann_id, int) and not isinstance(ann_id, bool) else 0)


def _task_id(task: dict[str, Any], fallback: Any = None) -> Any:
    """The task's id for reports: an int or str as exported, else a short text (always hashable)."""
    tid = task.get("id", fallback)
    return tid if isinstance(tid, (int, str)) or tid is None else f"{tid!r:.40}"


def _differences(a: Labeling, b: Labeling) -> list[str]:
    out = []
    if set(a.labels) != set(b.labels):
        out.append(f"labels {sorted(set(a.labels) ^ set(b.labels))} differ")
    if a.inset != b.inset:
        out.append(f"inset {a.inset} vs {b.inset}")
    unmatched = list(b.boxes)
    for cls, box in a.boxes:
        match = next((o for o in unmatched if o[0] == cls and iou_xywh_px(box, o[1]) >= 0.5), None)
        if match is None:
            out.append(f"{cls} box at {[round(v, 1) for v in box]} not drawn by all")
            break
        unmatched.remove(match)
    else:
        if unmatched:
            out.append(f"{len(unmatched)} extra box(es) drawn by some")
    return out


def _choose(cands: list[tuple[dict, Any, Labeling]], policy: str) -> tuple[dict, Any, Labeling] | None:
    ordered = sorted(cands, key=lambda c: _stamp(c[0]))
    if policy == "earliest":
        return ordered[0]
    if policy == "ground-truth":
        flagged = [c for c in ordered if c[0].get("ground_truth")]
        return (flagged or ordered)[-1]
    if policy == "unanimous" and any(_differences(ordered[-1][2], c[2]) for c in ordered[:-1]):
        return None
    return ordered[-1]


# ---- the conversion ------------------------------------------------------------------
def _group_tasks(tasks: Iterable[Any], data_root: Path | None, report: ConvertReport) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for i, task in enumerate(tasks):
        report.n_tasks += 1
        if not isinstance(task, dict):
            report.problems.append(Problem(f"#{i}", "malformed-task", f"task #{i} is not a JSON object"))
            continue
        tid = _task_id(task, f"#{i}")
        try:
            if not isinstance(task.get("data"), dict):
                raise ConvertError("task has no 'data' object")
            key = image_key_from_task_data(task["data"])
            if data_root is not None and not resolve_in_root(data_root, key).is_file():
                raise ConvertError(f"image {key!r} not found under the data root {data_root}")
        except (ConvertError, OSError, RuntimeError) as exc:  # OSError: name too long; RuntimeError: symlink loop
            report.problems.append(Problem(tid, "unresolvable-image", str(exc)))
            report.n_failed += 1
            report.rejected_task_ids.append(tid)
            continue
        if key in groups:
            report.problems.append(Problem(tid, "duplicate-task", f"another task ({_task_id(groups[key][0])}) has the "
                                           "same image; their annotations are pooled", "warning", key))
        groups.setdefault(key, []).append(task)
    return groups


def _image_size(key: str, base_entry: dict | None, data_root: Path | None, tid: Any,
                report: ConvertReport) -> tuple[int, int] | None:
    if base_entry is not None:
        return int(base_entry["width"]), int(base_entry["height"])
    if data_root is not None:
        try:
            return image_size(resolve_in_root(data_root, key))
        except ImageError as exc:
            report.problems.append(Problem(tid, "unreadable-image", exc.reason, "warning", key))
    return None


def _convert_group(key, tasks, size, policy, taxonomy, report):
    """Convert and choose the annotation of one image.

    Returns:
        ``(status, value)``: status is applied | skipped | predictions | unlabeled | failed;
        value is ``(labeling, annotation, task_id, (width, height))`` when applied, else None.
    """
    cands, n_valid, n_cancelled = [], 0, 0
    for task in tasks:
        tid = _task_id(task)
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            report.problems.append(Problem(tid, "malformed-task", f"'annotations' is not a list (got {annotations!r:.60})",
                                           file_name=key))
            annotations = []
        for ann in annotations:
            if not isinstance(ann, dict):
                report.problems.append(Problem(tid, "malformed-annotation", f"annotation {ann!r:.60} is not an object",
                                               file_name=key))
                continue
            if ann.get("was_cancelled"):
                n_cancelled += 1
                continue
            results = ann.get("result")
            if not isinstance(results, list):
                report.problems.append(Problem(tid, "malformed-annotation", f"annotation {ann.get('id')} has no result list",
                                               file_name=key))
                n_valid += 1
                continue
            n_valid += 1
            ann_size = size or next((s for s in map(result_size, results) if s), None)
            labeling, problems = labeling_from_results(results, ann_size, taxonomy, tid)
            if size and any(s and s != size for s in map(result_size, results)):
                problems.append(Problem(tid, "size-mismatch", f"original_width/height differ from the image's "
                                        f"{size[0]}x{size[1]}; converted with the image's size", "warning"))
            for p in problems:
                p.file_name = key
            report.problems.extend(problems)
            if not any(p.severity == "error" for p in problems):
                cands.append((ann, tid, labeling, ann_size))
    if not n_valid:
        kind = "skipped" if n_cancelled else ("predictions" if any(t.get("predictions") for t in tasks) else "unlabeled")
        return kind, None
    if not cands:
        report.n_failed += 1
        return "failed", None
    if cands[0][3] is None:
        report.problems.append(Problem(cands[0][1], "no-size", "image size unknown (no boxes with original_width/height, "
                                       "no base entry, no readable image): give --data-root", file_name=key))
        report.n_failed += 1
        return "failed", None
    chosen = _choose([c[:3] for c in cands], policy)
    ref = chosen or max(cands, key=lambda c: _stamp(c[0]))
    diffs = sorted({d for c in cands if c[0] is not ref[0] for d in _differences(c[2], ref[2])})
    if len(cands) > 1 and diffs:
        report.conflicts.append(Conflict(key, sorted({c[1] for c in cands}, key=str), [c[0].get("id") for c in cands],
                                         [c[0].get("completed_by") for c in cands], diffs,
                                         "not applied (unanimous policy)" if chosen is None else
                                         f"{policy}: annotation {chosen[0].get('id')}"))
    if chosen is None:
        report.n_failed += 1
        return "failed", None
    return "applied", (chosen[2], chosen[0], chosen[1], cands[0][3])


def export_to_canonical(
    tasks: Iterable[Any],
    data_root: str | Path | None = None,
    base: CanonicalDataset | None = None,
    policy: str = "latest",
    skipped: str = "keep",
    taxonomy: Taxonomy | None = None,
    expert_changes: str = "review",
) -> tuple[CanonicalDataset, ConvertReport]:
    """Convert exported tasks into a new canonical dataset (``base`` is not modified).

    Args:
        tasks: the export's tasks: a list, or a stream (``snapshot.iter_export_file``, through
            ``slim_task`` to hold less); each is read once.
        data_root: images' root; checks that each image exists inside it and reads sizes.
        base: the previous canonical file; images without usable annotations keep its state.
        policy: one of ``POLICIES``. skipped: one of ``SKIPPED_POLICIES``.
        expert_changes: ``review`` keeps the base entry of a task whose submission removes, moves or
            relabels its labels/boxes or is an unedited model draft; ``apply`` takes it (both list it).

    Returns:
        ``(dataset, report)``; ``report.changes`` compares with ``base``.
    """
    if policy not in POLICIES or skipped not in SKIPPED_POLICIES or expert_changes not in EXPERT_POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, skipped one of {SKIPPED_POLICIES} and "
                         f"expert_changes one of {EXPERT_POLICIES}")
    taxonomy = taxonomy or load_taxonomy()
    root = Path(data_root).resolve() if data_root is not None else None
    report = ConvertReport(expert_changes=expert_changes)  # n_tasks counted as the tasks stream by
    base_by_file = {img["file_name"]: img for img in base.images} if base else {}
    experts = _expert_labelings(base)
    applied: dict[str, tuple] = {}
    dropped: set[str] = set()
    for key, group in _group_tasks(tasks, root, report).items():
        if len(group) > 1:  # duplicate tasks: every task's model drafts count (slim_task packed some)
            group = [_unpacked(t) for t in group]
        size = _image_size(key, base_by_file.get(key), root, _task_id(group[0]), report)
        status, value = _convert_group(key, group, size, policy, taxonomy, report)
        if status == "applied" and _held(key, group, value, experts.get(key), taxonomy, report):
            continue
        if status == "applied":
            applied[key] = value
            report.n_applied += 1
        elif status == "skipped":
            report.n_skipped += 1
            report.skipped_task_ids += [t.get("id") for t in group]
            if skipped == "drop":
                dropped.add(key)
        elif status == "failed":
            report.rejected_task_ids += [t.get("id") for t in group]
        elif status == "predictions":
            report.n_predictions_only += 1
        elif status == "unlabeled":
            report.n_unlabeled += 1
    out = _build(base, applied, dropped, taxonomy, policy)
    report.changes = diff_canonical(base, out)
    return out, report


def _expert_labelings(base: CanonicalDataset | None) -> dict[str, Labeling]:
    if base is None:
        return {}
    names = {c["id"]: c["name"] for c in base.categories}
    boxes = base.boxes_by_image()
    return {img["file_name"]: labeling_of_image(img, [(names[b["category_id"]], b["bbox"]) for b in boxes.get(img["id"], [])])
            for img in base.images}


def _held(key, group, value, expert, taxonomy, report) -> bool:
    """Flag the chosen annotation against the expert labels; True when it is held for review."""
    labeling, ann, tid, size = value
    flag = flag_submission(key, labeling, ann, tid, expert, model_labelings(group, size, taxonomy))
    if flag is None:
        return False
    held = report.expert_changes == "review"
    flag.action = "kept the expert labels" if held else "applied"
    report.expert_review.append(flag)
    report.n_held_for_review += int(held)
    return held


def _build(base, applied, dropped, taxonomy, policy) -> CanonicalDataset:
    out = CanonicalDataset.new("labelstudio", taxonomy=taxonomy)
    if base is not None:
        out.info = {**base.info, "date_created": out.info["date_created"], "taxonomy_version": taxonomy.version}
    out.info["labelstudio"] = {"policy": policy, "n_applied": len(applied)}
    new_cat = {c["name"]: c["id"] for c in out.categories}
    base_cat = {c["id"]: c["name"] for c in base.categories} if base else {}
    base_boxes = base.boxes_by_image() if base else {}
    entries = [(img, base_boxes.get(img["id"], [])) for img in (base.images if base else []) if img["file_name"] not in dropped]
    known = {img["file_name"] for img, _ in entries}
    next_id = max([img["id"] for img, _ in entries], default=0) + 1
    for key in applied:
        if key not in known:
            entries.append(({"id": next_id, "file_name": key, "source": "labelstudio", "source_class": None,
                             "inset": None, "inset_box": None, "content_sha256": None}, []))
            next_id += 1
    for img, old_boxes in entries:
        img = dict(img)
        if img["file_name"] in applied:
            labeling, ann, tid, (width, height) = applied[img["file_name"]]
            img.update(width=int(width), height=int(height), labels=list(labeling.labels))
            if labeling.inset is not None and labeling.inset != img.get("inset"):
                img["inset_box"] = img.get("inset_box") if labeling.inset != "none" else None
                img["inset"] = labeling.inset
            img["labelstudio"] = {"task_id": tid, "annotation_id": ann.get("id"), "annotator": ann.get("completed_by"),
                                  "updated_at": ann.get("updated_at")}
            boxes = [(cls, list(box)) for cls, box in labeling.boxes]
        else:
            boxes = [(base_cat[b["category_id"]], list(b["bbox"])) for b in old_boxes]
        out.images.append(img)
        for cls, (x, y, w, h) in boxes:
            out.annotations.append({"id": len(out.annotations) + 1, "image_id": img["id"], "category_id": new_cat[cls],
                                    "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    return out
