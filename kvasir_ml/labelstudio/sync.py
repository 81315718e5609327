"""Push a canonical dataset into a Label Studio project; pull annotations back as a new version.

Push is idempotent: tasks are keyed by the image's canonical ``file_name`` (stored in the
task data), predictions by ``model_version``; whatever already exists is skipped, so a push
that stopped half-way is simply run again. New tasks go in batches through the bulk import
API with their predictions inline (one request per batch, not per task).

Pull takes a snapshot export through the SDK, converts it with ``from_export.py`` and writes
the next version of the canonical file beside the previous one (never in place).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.io import atomic_write
from kvasir_ml.labelstudio.client import LabelStudioError, LSClient
from kvasir_ml.labelstudio.labeling_config import labeling_config_xml
from kvasir_ml.labelstudio.convert import (
    ConvertError, Problem, image_key_from_task_data, prediction_from_combined, safe_relative_path, task_payload,
)
from kvasir_ml.labelstudio.expert import ExpertPush, push_expert_drafts, review_path_for, write_review_file
from kvasir_ml.labelstudio.from_export import ConvertReport, export_to_canonical, slim_task
from kvasir_ml.labelstudio.snapshot import DEFAULT_EXPORT_WAIT_S, download_snapshot, iter_export_file
from kvasir_ml.labelstudio.queue import UNCERTAINTY_SAMPLING, set_uncertainty_sampling, update_task_fields
from kvasir_ml.labelstudio.uncertainty import PRELABEL_CONF, PRELABEL_MAX_BOXES, frame_confidence, uncertainty_fields
from kvasir_ml.labelstudio.versions import find_same_version, next_version_path, pull_fingerprint, write_version
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)


@dataclass
class PushReport:
    project_id: int
    n_images: int = 0
    n_tasks_created: int = 0
    n_tasks_existing: int = 0
    n_predictions_created: int = 0
    n_predictions_existing: int = 0
    problems: list[Problem] = field(default_factory=list)
    sampling_before: str | None = None  # set when the push switched the queue to uncertainty sampling
    expert: ExpertPush | None = None  # the expert drafts pushed (None: none asked for)
    model_version: str | None = None  # the pre-annotations' version (set by push_models.push_with_predictions)

    def summary_lines(self, max_items: int = 20) -> list[str]:
        lines = [f"project {self.project_id}: {self.n_images} images; tasks created {self.n_tasks_created}, "
                 f"already there {self.n_tasks_existing}; predictions created {self.n_predictions_created}, "
                 f"already there {self.n_predictions_existing}; problems {len(self.problems)}"]
        if self.sampling_before is not None:
            lines.append(f"queue: Label All Tasks serves the least certain frame first (sampling "
                         f"{self.sampling_before!r} -> 'Uncertainty sampling')")
        if self.expert is not None:
            lines.append(self.expert.summary_line())
        return lines + [f"  {p}" for p in self.problems[:max_items]]


@dataclass
class PullResult:
    """``path``/``report_path`` are None when nothing changed since the base (no new version)."""

    path: Path | None
    report_path: Path | None
    report: ConvertReport
    export_path: Path | None = None
    redo_view: str | None = None  # title of the data-manager tab listing the rejected tasks
    same_as: Path | None = None  # an existing version with this pull's content (pulled before): nothing written
    review_path: Path | None = None  # the flagged submissions (expert.py), when there are any


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---- project and storage ------------------------------------------------------------------
def find_project(client: LSClient, project: str | int) -> int | None:
    """Project id for an id or a title; None when no project has that title.

    Raises:
        LabelStudioError: an id that does not exist, or a title used by several projects.
    """
    if isinstance(project, int) or str(project).isdigit():
        return int(client.call(f"get project {project}", client.sdk.projects.get, id=int(project)).id)
    matches = client.find_projects(str(project))
    if len(matches) > 1:
        raise LabelStudioError(f"{len(matches)} projects are titled {project!r} (ids {[p.id for p in matches]}); give the id")
    return int(matches[0].id) if matches else None


def ensure_project(client: LSClient, project: str | int, label_config: str | None = None) -> int:
    """Reuse the project (by id or title) or create it with the generated labeling config."""
    label_config = label_config or labeling_config_xml()
    pid = find_project(client, project)
    if pid is None:
        created = client.call(f"create project {project!r}", client.sdk.projects.create, idempotent=False,
                              title=str(project), label_config=label_config)
        log.info("created Label Studio project %s (%r)", created.id, project)
        return int(created.id)
    current = client.call(f"get project {pid}", client.sdk.projects.get, id=pid).label_config
    if (current or "").strip() != label_config.strip():
        log.warning("project %s has a different labeling config than annotations/labeling_config.xml; "
                    "regenerate it or update the project in Label Studio", pid)
    return pid


def ensure_local_storage(client: LSClient, project_id: int, data_root: Path, file_names: Iterable[str]) -> list[str]:
    """Local-files storages covering the images' top-level folders (the server only serves
    files a storage covers, and refuses a storage at the document root itself).

    Raises:
        ValueError: an image lies directly in the data root.
    """
    tops = {name.split("/", 1)[0] for name in file_names if "/" in name}
    loose = [name for name in file_names if "/" not in name]
    if loose:
        raise ValueError(f"{len(loose)} image(s) lie directly in the data root (e.g. {loose[0]!r}); Label Studio only "
                         "serves files from a sub-folder of its document root: move them into a folder")
    storages = client.call(f"list storages of project {project_id}", client.sdk.import_storage.local.list, project=project_id)
    have = {str(Path(s.path).resolve()) for s in storages if getattr(s, "path", None)}
    created = []
    for top in sorted(tops):
        path = str((data_root / top).resolve())
        if path not in have:
            client.call(f"create local-files storage {path}", client.sdk.import_storage.local.create, idempotent=False,
                        project=project_id, path=path, title=f"kvasir-ml {top}", use_blob_urls=True)
            created.append(path)
    return created


def check_image_served(client: LSClient, data_root: Path, file_name: str) -> None:
    """Fetch one image through the server's local-files URL, as the browser will.

    A push with a data root other than the server's document root creates tasks whose images
    all 404 in the UI while every API call succeeds; this catches it before any task exists.

    Raises:
        LabelStudioError: the server does not serve the image (the message says why and what to do).
    """
    resp = client.get_path(f"fetch {file_name!r} through the local-files URL", "data/local-files/",
                           params={"d": file_name})
    if resp.status_code == 200:
        return
    hint = {404: "it has no such file: its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT is not the data root pushed "
                 f"with ({data_root}). Start the server on this data root (`kvasir-ml ls serve --data-root "
                 f"{data_root}`) or push with --data-root set to the server's document root",
            403: "local-files serving is off: start it with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
                 "(`kvasir-ml ls serve` does)"}.get(resp.status_code, "see the server log")
    raise LabelStudioError(f"Label Studio at {client.url} cannot show the pushed images: "
                           f"/data/local-files/?d={file_name} answered HTTP {resp.status_code}; {hint}. "
                           "No tasks were created.")


# ---- predictions ----------------------------------------------------------------------------
def match_predictions(entries: Sequence[dict[str, Any]], data_root: Path, known: set[str]) -> tuple[dict[str, dict], list[Problem]]:
    """Map combined-prediction entries (``kvasir_ml.inference.combined`` format) to canonical file names.

    An entry is matched by ``file_name`` if present, else by its ``image`` path (absolute,
    or relative to the data root or to the working directory), which must lie in the data root.
    """
    root = data_root.resolve()
    out, problems = {}, []
    for i, entry in enumerate(entries):
        where = entry.get("image") or entry.get("file_name") if isinstance(entry, dict) else None
        try:
            if not isinstance(entry, dict):
                raise ConvertError(f"prediction #{i} is not an object")
            if entry.get("file_name"):
                key = safe_relative_path(entry["file_name"])
            else:
                raw = Path(str(entry.get("image", "")))
                path = raw if raw.is_absolute() else (root / raw if (root / raw).exists() else Path.cwd() / raw)
                try:
                    key = path.resolve().relative_to(root).as_posix()
                except ValueError:
                    raise ConvertError(f"predicted image {str(raw)!r} is not inside the data root {root}") from None
            if key not in known:
                raise ConvertError(f"predicted image {key!r} is not in the canonical file")
        except ConvertError as exc:
            problems.append(Problem(f"prediction #{i}", "unmatched-prediction", str(exc), "warning", where))
            continue
        out[key] = entry
    return out, problems


def predictions_from_checkpoints(dataset: CanonicalDataset, data_root: Path, classifier_ckpt=None, detector_ckpt=None,
                                 device: str = "auto", trust_detector: bool = False, conf: float | None = PRELABEL_CONF,
                                 max_boxes: int = PRELABEL_MAX_BOXES) -> list[dict[str, Any]]:
    """Run ``kvasir_ml.inference.combined.predict_images`` on every image of the dataset.

    ``trust_detector`` skips the check that the detector file cannot run code (files you trust);
    ``conf`` / ``max_boxes``: the pre-annotation box threshold and per-frame cap (None = the
    checkpoint's ``predict_conf``).
    """
    from kvasir_ml.inference.combined import predict_images

    paths = [data_root / img["file_name"] for img in dataset.images]
    return predict_images(paths, classifier_ckpt=classifier_ckpt, detector_ckpt=detector_ckpt, device=device,
                          trust_detector=trust_detector, detector_conf=conf, max_boxes=max_boxes)


# ---- push -------------------------------------------------------------------------------------
def push_dataset(
    client: LSClient, dataset: CanonicalDataset, data_root: str | Path, project: str | int,
    predictions: dict[str, dict[str, Any]] | None = None, model_version: str | None = None,
    batch_size: int = 1000, taxonomy: Taxonomy | None = None, expert_version: str | None = None,
) -> PushReport:
    """Create the tasks (and pre-annotations) that the project does not have yet.

    Args:
        dataset: canonical dataset; each image becomes one task keyed by ``file_name``.
        data_root: folder the ``file_name``s are relative to (the server's document root).
        project: project id or title (created with the generated config if absent).
        predictions: ``file_name -> combined prediction entry`` (see ``match_predictions``).
        model_version: required with predictions; existing predictions of this version are kept.
        batch_size: tasks per bulk import request.
        expert_version: also give each task its expert draft (the canonical labels) under this
            ``model_version`` (``expert.expert_version_for``; see ``expert.push_expert_drafts``).

    A project this call creates is deleted again when the image check fails (a wrong data root
    leaves nothing behind).

    Predictions with a score also put ``uncertainty.uncertainty_fields`` into their task's data
    (readable: why the models are unsure) and switch the project to uncertainty sampling.
    """
    if predictions and not model_version:
        raise ValueError("pre-annotations need a model_version (it is how re-runs recognise them)")
    taxonomy = taxonomy or load_taxonomy()
    data_root = Path(data_root).resolve()
    existed = find_project(client, project) is not None
    pid = ensure_project(client, project)
    report = PushReport(project_id=pid, n_images=len(dataset.images))
    try:
        ensure_local_storage(client, pid, data_root, [img["file_name"] for img in dataset.images])
        if dataset.images:
            check_image_served(client, data_root, safe_relative_path(dataset.images[0]["file_name"], "canonical file_name"))
    except (LabelStudioError, ValueError):
        if not existed:
            client.call(f"delete project {pid} (created by this push, which stopped before any task)",
                        client.sdk.projects.delete, id=pid)
        raise
    existing: dict[str, int] = {}
    task_data: dict[int, dict[str, Any]] = {}
    for task in client.list_tasks(pid):
        task_data[task["id"]] = task["data"]
        try:
            existing.setdefault(image_key_from_task_data(task["data"]), task["id"])
        except ConvertError as exc:
            report.problems.append(Problem(task["id"], "foreign-task", f"{exc}; left alone", "warning"))
    have_pred: set[int] = set()
    if predictions and existing:
        rows = client.call(f"list predictions of project {pid}", client.sdk.predictions.list, project=pid)
        have_pred = {int(p.task) for p in rows if p.model_version == model_version and p.task is not None}

    def prediction_for(img: dict[str, Any], task_id: Any) -> dict[str, Any] | None:
        entry = (predictions or {}).get(img["file_name"])
        if entry is None:
            return None
        assert model_version is not None  # checked on entry: predictions need one
        pred, problems = prediction_from_combined(entry, img["width"], img["height"], model_version, taxonomy, task_id)
        for p in problems:
            p.file_name = img["file_name"]
        report.problems.extend(problems)
        return pred

    def send(batch: list[dict[str, Any]]) -> None:
        resp = client.post_json(f"import {len(batch)} tasks into project {pid}", f"api/projects/{pid}/import",
                                batch, params={"return_task_ids": "true"})
        report.n_tasks_created += int((resp or {}).get("task_count") or len(batch))
        report.n_predictions_created += sum(1 for t in batch if t.get("predictions"))

    # New tasks go out a batch at a time as they are made: 100k payloads are never held at once.
    # The next batch is built while the server imports the previous one (its import is ~2/3 of a push).
    with _Pipelined(send) as sender:
        extra_preds, fields = _build_and_send(dataset, existing, have_pred, predictions, prediction_for, report,
                                              sender.submit, batch_size)
    for batch in _chunks(extra_preds, batch_size):
        client.post_json(f"import {len(batch)} predictions into project {pid}",
                         f"api/projects/{pid}/import/predictions", list(batch))
        report.n_predictions_created += len(batch)
    if expert_version:
        report.expert = push_expert_drafts(client, pid, dataset, expert_version, predictions, taxonomy, batch_size)
    update_task_fields(client, task_data, fields)
    if predictions and any(frame_confidence(e) is not None for e in predictions.values()):
        before = set_uncertainty_sampling(client, pid)
        report.sampling_before = before if before != UNCERTAINTY_SAMPLING else None
    return report


class _Pipelined:
    """Runs ``send`` on one batch at a time in a worker thread, so the caller builds the next batch
    while the server imports this one. Batches reach the server one after another, in order; a
    send's error is raised by the next ``submit`` or on leaving the ``with`` block."""

    def __init__(self, send: Any):
        from concurrent.futures import ThreadPoolExecutor

        self._send = send
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ls-import")
        self._pending: Any = None

    def submit(self, batch: list[dict[str, Any]]) -> None:
        self.wait()
        self._pending = self._pool.submit(self._send, batch)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> "_Pipelined":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)  # an import in flight finishes (a push is safe to run again)


def _build_and_send(dataset: CanonicalDataset, existing: dict[str, int], have_pred: set[int],
                    predictions: dict[str, dict[str, Any]] | None, prediction_for: Any, report: PushReport,
                    submit: Any, batch_size: int) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Payloads of the tasks the project lacks, handed to ``submit`` ``batch_size`` at a time; returns
    the predictions for existing tasks and their uncertainty fields (``push_dataset``)."""
    new_batch: list[dict[str, Any]] = []
    extra_preds: list[dict[str, Any]] = []
    fields: dict[int, dict[str, Any]] = {}
    for img in dataset.images:
        key = safe_relative_path(img["file_name"], "canonical file_name")
        if key in existing:
            report.n_tasks_existing += 1
            tid = existing[key]
            if predictions and key in predictions:
                if tid in have_pred:
                    report.n_predictions_existing += 1
                elif (pred := prediction_for(img, tid)) is not None:
                    extra_preds.append({"task": tid, **pred})
                    fields[tid] = uncertainty_fields((predictions or {})[key])
            continue
        pred = prediction_for(img, None) if predictions else None
        new_batch.append(task_payload(key, [pred] if pred else []))
        if pred:  # why the models are unsure, readable in the task list and on the labeling page
            new_batch[-1]["data"].update(uncertainty_fields((predictions or {})[key]))
        if len(new_batch) >= batch_size:
            submit(new_batch)
            new_batch = []
    if new_batch:
        submit(new_batch)
    return extra_preds, fields


# ---- pull -------------------------------------------------------------------------------------
def export_snapshot(client: LSClient, project_id: int, task_filter: dict[str, Any] | None = None,
                    wait_s: float = DEFAULT_EXPORT_WAIT_S) -> list[dict[str, Any]]:
    """Tasks of a JSON snapshot export, as a list (small exports; ``pull_project`` streams instead).

    Args:
        task_filter: Label Studio ``task_filter_options``, e.g. ``{"annotated": "only"}``.
        wait_s: longest time for the server to build the snapshot (``snapshot.download_snapshot``).
    """
    with tempfile.TemporaryDirectory(prefix="kvasir-ls-export-") as tmp:
        path = download_snapshot(client, project_id, Path(tmp) / "export.json", task_filter, wait_s)
        return list(iter_export_file(path, f"export of project {project_id}"))


def pull_project(
    client: LSClient, project: str | int, data_root: str | Path | None, base_path: str | Path | None = None,
    out_path: str | Path | None = None, policy: str = "latest", skipped: str = "keep", save_export: bool = False,
    all_tasks: bool = False, expert_changes: str = "review", export_wait_s: float = DEFAULT_EXPORT_WAIT_S,
) -> PullResult:
    """Export the project and write its annotations as the next canonical version.

    Args:
        base_path: the previous canonical file (kept); images nobody annotated keep its state.
        out_path: where to write; default ``next_version_path(base_path)``. Never ``base_path``.
        save_export: also keep the raw export beside the output (``<name>.ls-export.json``).
        all_tasks: export every task (counts predictions-only and unlabeled tasks apart);
            default: only tasks with annotations (the others are counted as not exported).
        expert_changes: ``review`` keeps the base labels of tasks whose submission removes, moves
            or relabels them, or is an unedited model draft; ``apply`` takes them. Either way they
            are listed in the report and in ``expert.review_path_for(base_path)``.
        export_wait_s: longest time Label Studio may take to build a snapshot (``snapshot.py``).

    The exports are downloaded to files and parsed as a stream. The default pull lists the
    project's tasks (to name base images whose task was deleted) only when the project's task
    count differs from the base's image count; an all-tasks export sees every task itself.

    A pull whose result equals a version already written from the same base writes nothing
    (``same_as``).
    """
    pid = find_project(client, project)
    if pid is None:
        raise LabelStudioError(f"no Label Studio project titled {project!r}")
    if out_path is None:
        if base_path is None:
            raise ValueError("give the previous canonical file (base) or an output path")
        out_path = next_version_path(base_path)
    out_path = Path(out_path)
    if base_path is not None and out_path.resolve() == Path(base_path).resolve():
        raise ValueError(f"{out_path}: a pull writes a new version; it never overwrites the base file in place")
    base = load_canonical(base_path) if base_path is not None and Path(base_path).exists() else None
    with tempfile.TemporaryDirectory(prefix="kvasir-ls-pull-") as tmp:
        # --save-export keeps the raw all-tasks snapshot, so it is built; otherwise the tasks nobody
        # annotated come from the light task listing (``_with_unannotated``: ~1/3 of the server's work).
        full_snapshot = all_tasks and save_export
        files = _download_exports(client, pid, Path(tmp), full_snapshot, export_wait_s)
        keys: set[str] = set()  # every task's image: an all-tasks pull shows which base images lost theirs
        tasks = _stream_tasks(files, keys)
        if all_tasks and not full_snapshot:
            tasks = _with_unannotated(client, pid, tasks, keys)
        dataset, report = export_to_canonical(tasks, data_root=data_root, base=base, policy=policy,
                                              skipped=skipped, expert_changes=expert_changes)
        _count_and_find_deleted(client, pid, report, base, keys if all_tasks else None)
        redo_view = mark_rejected(client, pid, report.rejected_task_ids)
        unchanged = base is not None and not any(v for k, v in report.changes.items() if k != "changed")
        fingerprint = pull_fingerprint(base_path, dataset)
        same_as = None if unchanged else find_same_version(out_path, fingerprint)
        review_path = None
        if report.expert_review and base_path is not None:
            review_path = write_review_file(review_path_for(base_path), report.expert_review, expert_changes, base_path,
                                            None if unchanged else (same_as or out_path))
        if unchanged or same_as is not None:
            log.info("%s: no new version written", f"nothing changed since {base_path}" if unchanged else
                     f"{same_as} already holds this pull's result")
            return PullResult(path=None, report_path=None, report=report, redo_view=redo_view, same_as=same_as,
                              review_path=review_path)
        path, report_path = write_version(dataset, report, out_path, fingerprint)
        export_path = None
        if save_export:
            export_path = out_path.with_name(out_path.name.removesuffix(".json") + ".ls-export.json")
            atomic_write(export_path, lambda tmp_path: _merge_exports(files, tmp_path), keep_backup=True)
    return PullResult(path=path, report_path=report_path, report=report, export_path=export_path, redo_view=redo_view,
                      review_path=review_path)


def _count_and_find_deleted(client: LSClient, pid: int, report: ConvertReport, base: CanonicalDataset | None,
                            all_keys: set[str] | None) -> None:
    """Fill ``report.deleted`` (and, for a filtered export, the counts of tasks not exported).

    ``all_keys``: every task's image, from an all-tasks export; None after a filtered export, when
    the project's tasks are listed (~40 s for 100k) only if their count differs from the base's
    image count, the sign that a base image may have lost its task.
    """
    if all_keys is None:
        n_project = _task_count(client, pid)
        report.n_not_exported = max(0, n_project - report.n_tasks)
        report.n_tasks += report.n_not_exported
        if base is None or n_project == len(base.images):
            return
        all_keys = {k for k in map(_task_key, client.list_tasks(pid)) if k is not None}
    if base is not None:
        report.deleted = _base_images_without_task(base, all_keys)


def _download_exports(client: LSClient, pid: int, folder: Path, full_snapshot: bool, wait_s: float) -> list[Path]:
    if full_snapshot:
        return [download_snapshot(client, pid, folder / "all.json", None, wait_s)]
    # Only tasks with a submitted or a skipped annotation: two server-side filters, far
    # cheaper than serialising every prediction-only task of a large project.
    return [download_snapshot(client, pid, folder / "annotated.json", {"annotated": "only"}, wait_s),
            download_snapshot(client, pid, folder / "skipped.json", {"skipped": "only"}, wait_s)]


def _stream_tasks(files: Sequence[Path], keys: set[str]) -> Iterable[Any]:
    """The exports' tasks one at a time (a task in two exports once), slimmed; their image keys go to ``keys``."""
    seen: set[Any] = set()
    for path in files:
        for task in iter_export_file(path, f"Label Studio export {path.stem}"):
            tid = task.get("id") if isinstance(task, dict) else None
            if tid is not None and tid in seen:
                continue
            seen.add(tid)
            if (key := _task_key(task)) is not None:
                keys.add(key)
            yield slim_task(task)


def _with_unannotated(client: LSClient, pid: int, exported: Iterable[Any], keys: set[str]) -> Iterator[Any]:
    """Every task of the project in id order, as an all-tasks snapshot gives them: the annotated and
    skipped tasks from their exports (``exported``, slimmed), every other task (it has no annotation)
    from the task listing's ``id``, ``data`` and ``total_predictions``.

    The conversion reads a listed task's predictions only for whether it has any (predictions-only or
    unlabeled), so they stand as ``[None] * total_predictions``; the one case that reads their content,
    a second task of an annotated image (its model drafts are compared with the submission), fetches
    them. Building the full snapshot instead costs the server ~3x the listing (profiled at 10k)."""
    by_id: dict[Any, Any] = {}
    loose: list[Any] = []  # exported tasks without an id (malformed): passed on as they came
    for task in exported:
        tid = task.get("id") if isinstance(task, dict) else None
        if tid is None:
            loose.append(task)
        else:
            by_id[tid] = task
    annotated_keys = set(keys)
    for row in sorted(client.list_tasks(pid, extra_fields=("total_predictions",)), key=lambda r: r["id"]):
        if row["id"] in by_id:
            yield by_id.pop(row["id"])
            continue
        key = _task_key(row)
        n_preds = int(row.get("total_predictions") or 0)
        preds: list[Any] = [None] * n_preds
        if key is not None:
            keys.add(key)
            if n_preds and key in annotated_keys:
                preds = client.get_json(f"list predictions of task {row['id']}", "api/predictions",
                                         params={"task": row["id"]}) or []
        yield {"id": row["id"], "data": row["data"], "annotations": [], "predictions": preds}
    yield from (by_id[tid] for tid in sorted(by_id, key=str))  # exported, then deleted before the listing
    yield from loose


def _merge_exports(files: Sequence[Path], dest: Path) -> None:
    """The exports' tasks (each once, as exported) as one JSON list, written as they stream by."""
    seen: set[Any] = set()
    with open(dest, "w", encoding="utf-8") as fh:
        fh.write("[")
        first = True
        for path in files:
            for task in iter_export_file(path):
                tid = task.get("id") if isinstance(task, dict) else None
                if tid is not None and tid in seen:
                    continue
                seen.add(tid)
                fh.write(("" if first else ",\n") + json.dumps(task, ensure_ascii=False))
                first = False
        fh.write("]\n")


def _task_count(client: LSClient, pid: int) -> int:
    project = client.call(f"get project {pid}", client.sdk.projects.get, id=pid)
    return int(getattr(project, "task_number", None) or 0)


def _task_key(task: Any) -> str | None:
    data = task.get("data") if isinstance(task, dict) else None
    try:
        return image_key_from_task_data(data if isinstance(data, dict) else {})
    except ConvertError:
        return None


def _base_images_without_task(base: CanonicalDataset, keys: set[str]) -> list[dict[str, Any]]:
    """Base images that no task of the project shows (with the task id an earlier pull recorded)."""
    return [{"file_name": img["file_name"], "task_id": (img.get("labelstudio") or {}).get("task_id")}
            for img in base.images if img["file_name"] not in keys]


REDO_VIEW_TITLE = "kvasir-ml: redo (rejected at pull)"


def mark_rejected(client: LSClient, project_id: int, task_ids: Sequence[int]) -> str | None:
    """Keep a data-manager tab listing the tasks whose annotation a pull rejected, so
    annotators find and redo them instead of seeing "Completed"; removed when none are left.

    Returns:
        The tab's title, or None when there is nothing to redo.
    """
    views = client.call(f"list views of project {project_id}", client.sdk.views.list, project=project_id)
    mine = [v for v in views if ((getattr(v, "data", None) or {}).get("title") == REDO_VIEW_TITLE)]
    task_ids = sorted({t for t in task_ids if isinstance(t, int) and not isinstance(t, bool)})
    if not task_ids:
        for view in mine:
            client.call(f"delete view {view.id}", client.sdk.views.delete, id=view.id)
        return None
    data = {"title": REDO_VIEW_TITLE, "filters": {"conjunction": "or", "items": [
        {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": t} for t in task_ids]}}
    if mine:
        client.call(f"update view {mine[0].id}", client.sdk.views.update, id=mine[0].id, data=data, project=project_id)
    else:
        client.call(f"create view in project {project_id}", client.sdk.views.create, idempotent=False,
                    project=project_id, data=data)
    return REDO_VIEW_TITLE



# ---- models: version names, ML backend, the prelabeling model --------------------------------
def model_version_for(classifier: str | Path | None = None, detector: str | Path | None = None) -> str:
    """The ``model_version`` of predictions made by these checkpoints: their run names (``_run_name``)
    and content hashes, so the same files always give the same version (push, predict files and the ML
    backend agree, and re-pushing them is a no-op) and retrained files a new one."""
    from kvasir_ml.io import sha256_file

    paths = [Path(p) for p in (classifier, detector) if p]
    if not paths:
        raise ValueError("a model version needs at least one checkpoint")
    stems = "+".join(_run_name(p) for p in paths)
    return f"kvasir-ml-{stems}-{''.join(sha256_file(p)[:4] for p in paths)}"


def _run_name(checkpoint: Path) -> str:
    """``runs/ml-r50/checkpoints/best.pt`` -> ``ml-r50.best``; a loop turn's ``runs/loop-1/classifier/
    checkpoints/best.pt`` -> ``loop-1.classifier.best``; a loose file -> its stem."""
    if checkpoint.parent.name != "checkpoints" or not checkpoint.parent.parent.name:
        return checkpoint.stem
    run = checkpoint.parent.parent
    prefix = f"{run.parent.name}." if run.name in ("classifier", "detector") and run.parent.name else ""
    return f"{prefix}{run.name}.{checkpoint.stem}"


def connect_backend(client: LSClient, project: str | int, url: str, title: str | None = None,
                    basic_auth: tuple[str, str] | None = None) -> int:
    """Register the ML backend at ``url`` with the project (reused when already registered).

    Label Studio checks ``/health`` and calls ``/setup`` at once; from then on it asks the
    backend for predictions of tasks opened without one, and on the data manager's
    *Retrieve predictions* action. The backend's predictions carry the frame's confidence as
    their score, so the project is switched to uncertainty sampling (``queue``). Returns the
    ML backend's id. ``basic_auth`` = (user, password): Label Studio sends them with every
    call (its *Basic Auth* option for ML backends; also set on an existing registration).

    Raises:
        LabelStudioError: no such project, or Label Studio cannot reach the backend.
    """
    pid = find_project(client, project)
    if pid is None:
        raise LabelStudioError(f"no Label Studio project titled {project!r}")
    url = url.rstrip("/")
    existing = client.call(f"list ML backends of project {pid}", client.sdk.ml.list, project=pid)
    set_uncertainty_sampling(client, pid)
    auth: dict[str, Any] = ({"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
            if basic_auth else {})
    for ml in existing:
        if (ml.url or "").rstrip("/") == url:
            if auth:
                client.call(f"set basic auth of ML backend {url}", client.sdk.ml.update, id=ml.id, **auth)
            return int(ml.id)
    created = client.call(f"connect ML backend {url} to project {pid}", client.sdk.ml.create, idempotent=False,
                          project=pid, url=url, title=title or "kvasir-ml", is_interactive=False, auto_update=True,
                          **auth)
    state = str(getattr(created, "state", "") or "")
    if state in ("DI", "ER", "Disconnected", "Error"):
        raise LabelStudioError(f"Label Studio registered {url} but cannot use it (state {state}: "
                               f"{getattr(created, 'error_message', '') or 'not reachable from the server'})")
    return int(created.id)


def set_prelabeling_model(client: LSClient, project: str | int, model_version: str) -> str | None:
    """Make ``model_version`` the project's prelabeling model: its predictions pre-fill the
    drafts annotators open and are the ones the data manager's *Prediction score* column
    (and its sort) shows. Label Studio otherwise keeps the first version ever imported.

    Returns:
        The previous ``model_version`` of the project.
    """
    pid = find_project(client, project)
    if pid is None:
        raise LabelStudioError(f"no Label Studio project titled {project!r}")
    before = client.call(f"get project {pid}", client.sdk.projects.get, id=pid).model_version
    client.call(f"set the prelabeling model of project {pid}", client.sdk.projects.update, id=pid,
                model_version=model_version)
    return before or None
