"""Verified ground truth, part 3: pull a verification project into a new canonical version.

``pull_verification`` exports the project, reads each annotator's answers
(``verify_answers``), measures the agreement per label (Cohen's kappa for two annotators,
Krippendorff's alpha for more) and per box class (IoU matching), resolves each image by
majority (ties: the adjudication project's answer, when given) and writes the base file's
next version (never the base itself) in which

* every resolved image carries the verified labels and boxes and a ``verified`` entry:
  project, annotators, annotation ids, when, its agreement and what was adjudicated, and
  the labels it had before (``previous_labels``);
* every other image is unchanged (open images are listed in the report, and
  ``create_adjudication_project`` puts them into a small adjudication project);
* ``info.verification`` holds the per-label agreement and the counts.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.evaluation.agreement import DEFAULT_IOU, box_agreement, label_agreement
from kvasir_ml.io import atomic_write_json, read_json, sha256_file
from kvasir_ml.labelstudio.client import LabelStudioError, LSClient
from kvasir_ml.labelstudio.convert import annotation_time, image_url
from kvasir_ml.labelstudio.verify import (
    IMAGE_NAME, MIN_ANNOTATORS, OPEN_KEY, ensure_labeling_project, import_missing_tasks, verification_config_xml,
)
from kvasir_ml.labelstudio.verify_answers import Answer, Resolution, collect_answers, resolve_image
from kvasir_ml.labelstudio.versions import find_same_version, next_version_path, pull_fingerprint
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

@dataclass
class VerifyResult:
    path: Path
    report_path: Path
    report: dict[str, Any]
    reused: bool = False  # an earlier pull from the same base gave the same version: nothing written

    def summary_lines(self, max_items: int = 20) -> list[str]:
        r = self.report
        lines = [f"images answered {r['n_images_answered']}: verified {r['n_verified']} "
                 f"(adjudicated {r['n_adjudicated']}), open (ties) {len(r['open'])}, fewer than "
                 f"{r['min_annotators']} annotators {len(r['too_few_annotators'])}; problems {len(r['problems'])}"]
        for label, a in r["agreement"]["labels"].items():
            value = "undefined" if a["value"] is None else f"{a['value']:.3f}"
            raw = "-" if a["raw_agreement"] is None else f"{a['raw_agreement']:.2f}"
            lines.append(f"  {label:20s} {a['method'] or '-':18s} {value:>9s}  raw {raw}  images {a['n_images']}")
        for box_class, a in r["agreement"]["boxes"].items():
            f1 = "-" if a["f1"] is None else f"{a['f1']:.3f}"
            iou = "-" if a["mean_iou"] is None else f"{a['mean_iou']:.3f}"
            lines.append(f"  box {box_class:16s} match F1 {f1}  mean IoU {iou}  boxes {a['n_boxes']}")
        lines += [f"  open: {o['file_name']}: {', '.join(o['labels'] + ['box:' + b for b in o['boxes']])}"
                  for o in r["open"][:max_items]]
        lines += [f"  {p['severity']}: task {p['task_id']}: {p['message']}" for p in r["problems"][:max_items]]
        return lines


def _users(client: LSClient) -> dict[Any, str]:
    rows = client.call("list users", client.sdk.users.list)
    return {u.id: (u.email or u.username or str(u.id)) for u in rows}


def _export(client: LSClient, project: str | int) -> tuple[int, list[dict[str, Any]]]:
    from kvasir_ml.labelstudio.sync import export_snapshot, find_project

    pid = find_project(client, project)
    if pid is None:
        raise LabelStudioError(f"no Label Studio project titled {project!r}")
    return pid, export_snapshot(client, pid, {"annotated": "only"})


def agreement_report(answers: dict[str, list[Answer]], taxonomy: Taxonomy,
                     iou_threshold: float = DEFAULT_IOU) -> dict[str, Any]:
    """Per-label and per-box-class agreement over every image with >= 2 answers."""
    labels = {label: label_agreement({f: {a.annotator: a.labels[label] for a in ans if label in a.labels}
                                      for f, ans in answers.items()})
              for label in taxonomy.label_names}
    boxes = {c: box_agreement({f: {a.annotator: a.boxes.get(c, []) for a in ans}
                               for f, ans in answers.items() if len(ans) >= 2}, iou_threshold)
             for c in taxonomy.box_class_names}
    return {"labels": labels, "boxes": boxes}


def build_verified_version(base: CanonicalDataset, resolutions: Sequence[Resolution], taxonomy: Taxonomy,
                           provenance: dict[str, Any], users: dict[Any, str] | None = None) -> CanonicalDataset:
    """A copy of ``base`` with the resolved images' verified labels, boxes and ``verified`` entries."""
    ds = CanonicalDataset(info=copy.deepcopy(base.info), categories=list(base.categories),
                          images=copy.deepcopy(base.images), annotations=[])
    done = {r.file_name: r for r in resolutions if not r.is_open}
    by_file = ds.image_by_file
    base_boxes = base.boxes_by_image()
    names = {c["id"]: c["name"] for c in base.categories}
    for res in done.values():
        img = by_file[res.file_name]
        img["verified"] = {
            **provenance,
            "annotators": [{"id": a.annotator, "name": (users or {}).get(a.annotator, str(a.annotator))}
                           for a in res.answers],
            "annotation_ids": [a.annotation_id for a in res.answers],
            "task_ids": sorted({a.task_id for a in res.answers}, key=str),
            "annotated_at": max((a.updated_at for a in res.answers), key=annotation_time),
            "labels_unanimous": res.unanimous_share,
            "disagreed": [lab for lab in taxonomy.label_names
                          if len({a.labels.get(lab) for a in res.answers if lab in a.labels}) > 1],
            "adjudicated": list(res.adjudicated), "previous_labels": list(img["labels"]),
            "previous_boxes": [{"category": names[a["category_id"]], "bbox": list(a["bbox"])}
                               for a in base_boxes.get(img["id"], [])],
        }
        img["labels"] = [lab for lab in taxonomy.label_names if res.labels.get(lab)]
    verified_ids = {by_file[f]["id"] for f in done}
    # the other images' boxes keep their ids; verified boxes are appended after the highest
    ds.annotations = sorted((copy.deepcopy(a) for a in base.annotations if a["image_id"] not in verified_ids),
                            key=lambda a: a["id"])
    for res in done.values():
        for box_class, boxes in res.boxes.items():
            for box in boxes:
                ds.add_box(by_file[res.file_name]["id"], box_class, [float(v) for v in box], box_origin="verified")
    return ds


def pull_verification(client: LSClient, project: str | int, base_path: str | Path, out_path: str | Path | None = None,
                      adjudication: str | int | None = None, iou_threshold: float = DEFAULT_IOU,
                      min_annotators: int = MIN_ANNOTATORS, taxonomy: Taxonomy | None = None) -> VerifyResult:
    """Export the verification project (and the adjudication project), write the next version.

    Args:
        base_path: the canonical file the sample was drawn from (kept unchanged).
        out_path: default ``next_version_path(base_path)``; never the base.
        adjudication: project (title or id) whose annotations settle the open images.

    Returns:
        The written version, its ``.report.json`` and the report.
    """
    taxonomy = taxonomy or load_taxonomy()
    base = load_canonical(base_path)
    out_path = Path(out_path) if out_path else next_version_path(base_path)
    if out_path.resolve() == Path(base_path).resolve():
        raise ValueError(f"{out_path}: a verification pull writes a new version; it never overwrites the base file")
    sizes = {img["file_name"]: (img["width"], img["height"]) for img in base.images}
    pid, tasks = _export(client, project)
    answers, problems = collect_answers(tasks, sizes, taxonomy)
    adjudicated: dict[str, Answer] = {}
    adj_pid = None
    if adjudication is not None:
        adj_pid, adj_tasks = _export(client, adjudication)
        adj_answers, adj_problems = collect_answers(adj_tasks, sizes, taxonomy)
        problems += adj_problems
        adjudicated = {f: max(a, key=lambda x: annotation_time(x.updated_at)) for f, a in adj_answers.items()}
    enough = {f: a for f, a in answers.items() if len(a) >= min_annotators}
    resolutions = [resolve_image(f, a, taxonomy, adjudicated.get(f), iou_threshold) for f, a in sorted(enough.items())]
    agreement = agreement_report(answers, taxonomy, iou_threshold)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    provenance = {"project_id": pid, "adjudication_project_id": adj_pid}  # no time: same answers, same content
    dataset = build_verified_version(base, resolutions, taxonomy, provenance, _users(client))
    fingerprint = pull_fingerprint(base_path, dataset)
    same = find_same_version(out_path, fingerprint)
    if same is not None:  # pulling again without new answers writes no duplicate version
        report_path = same.with_name(same.name.removesuffix(".json") + ".report.json")
        return VerifyResult(same, report_path, read_json(report_path), reused=True)
    report = {
        "base": str(base_path), "base_sha256": sha256_file(base_path), "project_id": pid,
        "adjudication_project_id": adj_pid, "pulled_at": stamp, "iou_threshold": iou_threshold,
        "min_annotators": min_annotators, "n_images_answered": len(answers),
        "n_verified": sum(not r.is_open for r in resolutions),
        "n_adjudicated": sum(bool(r.adjudicated) and not r.is_open for r in resolutions),
        "open": [{"file_name": r.file_name, "labels": r.open_labels, "boxes": r.open_boxes}
                 for r in resolutions if r.is_open],
        "too_few_annotators": sorted(f for f, a in answers.items() if len(a) < min_annotators),
        "agreement": agreement, "problems": [p.to_dict() for p in problems], "fingerprint": fingerprint,
    }
    dataset.info["verification"] = {k: report[k] for k in ("base", "base_sha256", "project_id",
                                                           "adjudication_project_id", "pulled_at", "n_verified",
                                                           "iou_threshold", "agreement")}
    dataset.save(out_path, keep_backup=True)
    report_path = out_path.with_name(out_path.name.removesuffix(".json") + ".report.json")
    atomic_write_json(report_path, report, keep_backup=True)
    return VerifyResult(out_path, report_path, report)


def create_adjudication_project(client: LSClient, open_images: Sequence[dict[str, Any]], data_root: str | Path,
                                project: str, taxonomy: Taxonomy | None = None) -> tuple[int, int]:
    """A small project (one annotation per task) with the open images of a verification pull,
    each task naming what the annotators disagreed on. Re-running adds only new images.

    Args:
        open_images: the report's ``open`` entries (``file_name``, ``labels``, ``boxes``).

    Returns:
        ``(project id, tasks created)``.
    """
    keys = [o["file_name"] for o in open_images]
    settings = {"maximum_annotations": 1, "show_collab_predictions": False}
    pid, _ = ensure_labeling_project(client, project, verification_config_xml(taxonomy, adjudication=True), settings,
                                     data_root, keys, "kvasir-ml verification: adjudication of tied answers")
    data = {o["file_name"]: {IMAGE_NAME: image_url(o["file_name"]),
                             OPEN_KEY: ", ".join(o["labels"] + [f"{b} boxes" for b in o["boxes"]])}
            for o in open_images}
    return pid, import_missing_tasks(client, pid, data)

