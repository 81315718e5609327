"""Out-of-fold (OOF) predictions: every image scored by a model that never trained on it.

A label-error ranking needs each image's prediction from a model that did not see that
image's (possibly wrong) label; otherwise the model has memorised the error. ``make_folds``
deals the images into k folds; ``run_kfold`` trains the project's own classifier
(``train.run.train_classifier``) and detector (``detection.run.train_detector``) once per
fold with that fold as the test split (a saved ``split.json`` each), and reads back what
every run already writes for its test split: ``predictions_test.npz`` (label
probabilities) and ``predictions/test.coco_results.json`` (boxes at the scoring
threshold). ``collect_oof`` reads the same files from finished runs (``--runs``), which
must cover every image of the canonical file out of fold between them.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kvasir_ml.config import load_config
from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.data.splits import Split, canonical_sha256, load_split
from kvasir_ml.io import read_json
from kvasir_ml.results_schema import ResultsError, read_metrics

log = logging.getLogger(__name__)

Detection = dict[str, Any]  # {"class", "score", "xywh_px"} as detection.detect returns them


class OofError(ValueError):
    """Runs or folds that cannot give out-of-fold predictions (the message names the run or images)."""


@dataclass
class OofPredictions:
    """Per image (``file_names`` order): label probabilities and/or detections, each from a
    model that did not train on the image; ``runs`` lists the run folders they came from."""

    file_names: list[str]
    label_names: list[str] | None = None
    label_scores: np.ndarray | None = None  # (N, L) sigmoid probabilities
    detections: dict[str, list[Detection]] | None = None  # file_name -> boxes, best first
    runs: list[str] = field(default_factory=list)
    class_names: list[str] | None = None
    class_scores: np.ndarray | None = None  # (N, C) source-class probabilities (review.features)


# ---- folds ----------------------------------------------------------------------------------
def make_folds(ds: CanonicalDataset, k: int, seed: int = 0, val_fraction: float = 0.15) -> list[Split]:
    """k splits whose test parts partition the images; each fold's val is a slice of the rest.

    Exact duplicates (same ``content_sha256``) stay in one fold; within each source class the
    groups are shuffled by ``seed`` and dealt round robin, so every fold sees every class.

    Raises:
        OofError: k < 2 or fewer groups than folds.
    """
    groups: dict[str, list[str]] = {}
    for img in ds.images:
        groups.setdefault(img.get("content_sha256") or img["file_name"], []).append(img["file_name"])
    if k < 2 or len(groups) < 2 * k:
        raise OofError(f"{k}-fold needs k >= 2 and at least 2k distinct images; the dataset has {len(groups)}")
    by_class: dict[str, list[list[str]]] = {}
    cls_of = {img["file_name"]: str(img.get("source_class")) for img in ds.images}
    for members in groups.values():
        by_class.setdefault(cls_of[members[0]], []).append(sorted(members))
    rng = random.Random(seed)
    fold_groups: list[list[list[str]]] = [[] for _ in range(k)]
    slot = 0
    for cls in sorted(by_class):
        cls_groups = sorted(by_class[cls])
        rng.shuffle(cls_groups)
        for group in cls_groups:
            fold_groups[slot % k].append(group)
            slot += 1
    sha = canonical_sha256(ds)
    splits = []
    for i in range(k):
        rest = [g for j in range(k) if j != i for g in fold_groups[j]]
        rng_i = random.Random(seed * 1000 + i)
        rng_i.shuffle(rest)
        n_val = max(1, round(val_fraction * len(rest)))
        names = {"test": [f for g in fold_groups[i] for f in g], "val": [f for g in rest[:n_val] for f in g],
                 "train": [f for g in rest[n_val:] for f in g]}
        splits.append(Split(seed=seed, method=f"kfold-{k}", fractions=None, canonical_sha256=sha, splits=names,
                            info={"fold": i, "k": k, "val_fraction": val_fraction}))
    return splits


# ---- reading a finished run's test predictions ------------------------------------------------
def classifier_test_scores(run_dir: Path) -> tuple[list[str], list[str], np.ndarray]:
    """``(file_names, label_names, label_scores)`` of a classifier run's test split."""
    path = run_dir / "predictions_test.npz"
    if not path.is_file():
        raise OofError(f"{run_dir}: no predictions_test.npz (not a finished classifier run)")
    with np.load(path, allow_pickle=False) as npz:
        if "file_names" not in npz:
            raise OofError(f"{path}: has no file_names (written by an older version); re-run the classifier")
        return ([str(f) for f in npz["file_names"]], [str(n) for n in npz["label_names"]],
                np.asarray(npz["label_scores"], dtype=np.float64))


def detector_test_boxes(run_dir: Path) -> dict[str, list[Detection]]:
    """``file_name -> boxes`` of a detector run's test split (every test image, boxes or not)."""
    from kvasir_ml.detection.config import DetectorConfig
    from kvasir_ml.detection.run import load_dataset

    results_path = run_dir / "predictions" / "test.coco_results.json"
    if not results_path.is_file() or not (run_dir / "split.json").is_file():
        raise OofError(f"{run_dir}: no predictions/test.coco_results.json or split.json (not a finished detector run)")
    ds, _, _ = load_dataset(load_config(DetectorConfig, run_dir / "config.yaml"), run_dir)
    file_of = {img["id"]: img["file_name"] for img in ds.images}
    out: dict[str, list[Detection]] = {f: [] for f in load_split(run_dir / "split.json").splits["test"]}
    for r in read_json(results_path):
        name = file_of.get(int(r["image_id"]))
        if name in out:
            out[name].append({"class": ds.category_name(int(r["category_id"])), "score": float(r["score"]),
                              "xywh_px": [float(v) for v in r["bbox"]]})
    for boxes in out.values():
        boxes.sort(key=lambda d: -d["score"])
    return out


def _run_kind(run_dir: Path) -> str:
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        raise OofError(f"{run_dir}: no metrics.json (not a finished run folder)")
    try:
        return read_metrics(metrics).kind  # a kind other than classifier/detector is refused, naming the file
    except ResultsError as exc:
        raise OofError(str(exc)) from None


def collect_oof(ds: CanonicalDataset, run_dirs: Sequence[str | Path]) -> OofPredictions:
    """Out-of-fold predictions from finished runs whose test splits cover every image.

    Classifier runs give label scores, detector runs boxes; an image in several runs' test
    splits gets the mean of its label scores (and the first run's boxes).

    Raises:
        OofError: a folder is not a finished run, label names differ, or images of ``ds``
            are in no run's test split (they are named).
    """
    names = [img["file_name"] for img in ds.images]
    index = {f: i for i, f in enumerate(names)}
    sums, counts, label_names = None, np.zeros(len(names)), None
    dets: dict[str, list[Detection]] | None = None
    for run in map(Path, run_dirs):
        if _run_kind(run) == "classifier":
            files, run_labels, scores = classifier_test_scores(run)
            if label_names is not None and run_labels != label_names:
                raise OofError(f"{run}: label names differ from the other classifier runs")
            label_names = run_labels
            sums = np.zeros((len(names), len(run_labels))) if sums is None else sums
            for f, row in zip(files, scores):
                if f in index:
                    sums[index[f]] += row
                    counts[index[f]] += 1
        else:
            dets = dets or {}
            for f, boxes in detector_test_boxes(run).items():
                dets.setdefault(f, boxes)
    missing_cls = [f for f, c in zip(names, counts) if c == 0] if sums is not None else []
    missing_det = [f for f in names if f not in dets] if dets is not None else []
    for what, missing in (("classifier", missing_cls), ("detector", missing_det)):
        if missing:
            raise OofError(f"{len(missing)} images are in no {what} run's test split, so they have no out-of-fold "
                           f"prediction (e.g. {missing[:3]}); give runs whose test splits cover every image")
    if sums is None and dets is None:
        raise OofError("no classifier or detector run given")
    oof_scores = sums / counts[:, None] if sums is not None else None
    return OofPredictions(names, label_names, oof_scores, dets, [str(r) for r in run_dirs])


# ---- k-fold training ------------------------------------------------------------------------
def _finished_for(run_dir: Path, split: Split, cfg: Any) -> bool:
    """A run folder that already finished on this very fold with this config (a re-run reuses
    it; runtime keys such as threads or device may differ). Another finished run there is
    refused by the training itself (a non-empty run folder)."""
    from kvasir_ml.config import dump_config
    from kvasir_ml.rundir import config_differences

    metrics, saved = run_dir / "metrics.json", run_dir / "config.yaml"
    if not (metrics.is_file() and saved.is_file()) or read_metrics(metrics).split_sha256 != split.sha256:
        return False
    loaded = load_config(type(cfg), saved)
    return not config_differences(dump_config(cfg), dump_config(loaded))


def _config_path(name: str | Path) -> Path:
    from kvasir_ml.resources import find_config

    path = find_config(name)
    if path is None:
        raise OofError(f"config {name}: no such file, nor a shipped config of that name")
    return path


def run_kfold(canonical: str | Path, work_dir: str | Path, k: int = 5, root: str | Path | None = None,
              classifier_config: str | Path | None = "classifier_multilabel_tiny.yaml",
              classifier_overrides: Sequence[str] = (),
              detector_config: str | Path | None = "detector_tiny.yaml", detector_overrides: Sequence[str] = (),
              seed: int = 0, class_view_folds: int | None = 5) -> OofPredictions:
    """Train one classifier and/or detector per fold and gather their out-of-fold predictions.

    Args:
        canonical: the canonical file whose labels are checked.
        work_dir: gets ``folds/fold<i>.split.json``, ``classifier/fold<i>/`` and
            ``detector/fold<i>/`` (run folders; a finished one for the same fold is reused).
        k: number of folds (each model trains on about (k-1)/k of the images).
        root: the images' folder; None = the canonical file's folder.
        classifier_config, detector_config: config names or paths; None = skip that model
            (the detector is skipped too when the canonical file has no boxes).
        classifier_overrides, detector_overrides: ``key=value`` config overrides.
        seed: fold assignment seed.
        class_view_folds: k of the class view (``add_class_view``: a logistic regression on
            image descriptors, seconds per fold) when a classifier is trained; None = no class view.

    Returns:
        The out-of-fold predictions of every image.
    """
    from kvasir_ml.detection.config import DetectorConfig
    from kvasir_ml.detection.run import train_detector
    from kvasir_ml.train.config import load_classifier_config
    from kvasir_ml.train.run import train_classifier

    canonical, work = Path(canonical).resolve(), Path(work_dir)
    root = Path(root).resolve() if root is not None else canonical.parent
    ds = load_canonical(canonical)
    folds = make_folds(ds, k, seed)
    data = [f"data.canonical={canonical}", f"data.root={root}"]
    runs = []
    for i, split in enumerate(folds):
        split_path = work / "folds" / f"fold{i}.split.json"
        split_path.parent.mkdir(parents=True, exist_ok=True)
        split.save(split_path)
        fold_data = data + [f"data.split_file={split_path.resolve()}"]
        if classifier_config is not None:
            run = work / "classifier" / f"fold{i}"
            cfg = load_classifier_config(_config_path(classifier_config), [*fold_data, *classifier_overrides])
            if not _finished_for(run, split, cfg):
                train_classifier(cfg, run)
            runs.append(run)
        if detector_config is not None and ds.annotations:
            run = work / "detector" / f"fold{i}"
            det_cfg = load_config(DetectorConfig, _config_path(detector_config), [*fold_data, *detector_overrides])
            if not _finished_for(run, split, det_cfg):
                train_detector(det_cfg, run)
            runs.append(run)
        log.info("fold %d/%d done", i + 1, k)
    oof = collect_oof(ds, runs)
    if classifier_config is not None and class_view_folds is not None:
        add_class_view(oof, ds, root, class_view_folds, seed)
    return oof


def add_class_view(oof: OofPredictions, ds: CanonicalDataset, root: str | Path, k: int = 5,
                   seed: int = 0) -> OofPredictions:
    """Add out-of-fold source-class probabilities (``review.features``, its own k folds) in place.

    Left out (None) when an image has no source class or there are fewer than 2 classes.
    """
    from kvasir_ml.review.features import oof_class_scores

    view = oof_class_scores(ds, root, oof.file_names, k, seed)
    if view is not None:
        oof.class_names, oof.class_scores = view
    return oof
