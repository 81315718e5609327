"""One detector run: data -> split -> YOLO export -> ultralytics training -> scores.

``train_detector(cfg, out_dir)`` is the entry point tests and the CLI call. The run folder::

    config.yaml  split.json  metrics.json  checkpoints/{best,last}.pt
    dataset/            the exported YOLO dataset (data.yaml, images/, labels/)
    ultralytics/        ultralytics' own run folder (weights/, results.csv, args.yaml)
    predictions/        COCO results JSON per split (pycocotools reads them)
    plots/              GT-vs-prediction overlays
    wandb/              offline W&B run files

W&B: the tracker run is started before ultralytics is imported, and ultralytics' own W&B
callback stays off (settings ``wandb=False``). We log its epoch metrics ourselves from an
``on_fit_epoch_end`` callback. Why not let its callback join our run: it is disabled under
pytest (so tests would not exercise it), it logs with its own implicit step counter (our
``step=epoch`` logs would then be dropped as out of order), it uploads best.pt a second time,
and it finishes runs it started — one path, ours, behaves the same in tests and real runs.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

from kvasir_ml.config import dump_config, load_config, save_config
from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.data.resolve import dataset_name, resolve_dataset, resolve_split
from kvasir_ml.data.verified import folder_view
from kvasir_ml.detection.config import DetectorConfig
from kvasir_ml.detection.yolo_dataset import YoloExport, export_yolo
from kvasir_ml.detection.training import check_resume_checkpoint, fit, history_from_results
from kvasir_ml.detection.yolo import resolve_weights
from kvasir_ml.results_schema import write_metrics
from kvasir_ml.rundir import RunDirError, check_run_dir, config_differences
from kvasir_ml.runlock import run_lock
from kvasir_ml.tracking import Tracker, make_tracker

log = logging.getLogger(__name__)


# What a detector run folder holds before ultralytics' first checkpoint (set aside on a restart).
_RUN_DIR_ENTRIES = ("config.yaml", "split.json", "data", "dataset", "ultralytics", "checkpoints", "predictions",
                    "plots", "wandb", "cache")  # cache: the split's perceptual-hash store


def _prepare_run_dir(out_dir: Path, resume: bool) -> bool:
    """``rundir.check_run_dir`` for a detector run (ultralytics resumes from its own last.pt;
    a finished run is re-scored); creates the folder. Returns whether to resume."""
    if resume and out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "config.yaml").is_file():
        raise RunDirError(f"{out_dir}: cannot resume, there is no config.yaml (not a detector run folder)")
    resuming = check_run_dir(out_dir, resume, out_dir / "ultralytics" / "weights" / "last.pt", _RUN_DIR_ENTRIES,
                             finished=(out_dir / "metrics.json").is_file())
    out_dir.mkdir(parents=True, exist_ok=True)
    return resuming


def load_dataset(cfg: DetectorConfig, run_dir: Path) -> tuple[CanonicalDataset, Path, str]:
    """The canonical dataset, its data root and its name (synthesised into RUN_DIR/data if asked)."""
    canonical, root = resolve_dataset(cfg.data, run_dir)
    ds = load_canonical(canonical)
    return ds, root, dataset_name(cfg.data, ds, canonical)


def _sample(ds: CanonicalDataset, max_images: int | None, seed: int) -> CanonicalDataset:
    if max_images is None or max_images >= len(ds.images):
        return ds
    names = sorted(img["file_name"] for img in ds.images)
    return ds.subset(random.Random(seed).sample(names, max_images))


def _resolved_config(config_path: str | Path, out_dir: Path, overrides, resume: bool) -> DetectorConfig:
    cfg = load_config(DetectorConfig, config_path, overrides)
    if resume and (out_dir / "config.yaml").is_file() and (out_dir / "ultralytics" / "weights" / "last.pt").is_file():
        saved = load_config(DetectorConfig, out_dir / "config.yaml")
        diffs = config_differences(dump_config(cfg), dump_config(saved))
        if diffs:
            raise RunDirError(f"cannot resume {out_dir}: config differs from its config.yaml in {', '.join(diffs)}")
        return saved  # ultralytics continues with the arguments it saved
    return cfg


def train_detector_from_cli(config_path: str | Path, out_dir: str | Path, overrides=(), resume: bool = False) -> Path:
    """``kvasir-ml train detector``: load the YAML + overrides, then ``train_detector``."""
    out = Path(out_dir)
    return train_detector(_resolved_config(config_path, out, list(overrides), resume), out, resume=resume)


def train_detector(cfg: DetectorConfig, out_dir: str | Path, resume: bool = False) -> Path:
    """Train and score a YOLO detector; everything lands in ``out_dir``.

    Args:
        cfg: the resolved detector config.
        out_dir: run folder (new or empty; with ``resume`` an existing detector run).
        resume: continue from ``RUN_DIR/ultralytics/weights/last.pt``; a run that failed
            before its first checkpoint is started again.

    Returns:
        The run folder (``metrics.json`` inside).

    Raises:
        RunDirError, ConfigError, ExportError, WeightsError: bad input, naming the problem.
        RunLockedError: another training is running into ``out_dir``.
    """
    run_dir = Path(out_dir)
    # a missing or unsafe weights file (or model YAML, or last.pt to resume) fails before any work
    resolve_weights(cfg.model.arch, cfg.model.weights, cfg.model.trust_weights)
    last = run_dir / "ultralytics" / "weights" / "last.pt"
    if resume and last.is_file():
        check_resume_checkpoint(last)
    with run_lock(run_dir):  # one training per run folder, taken before the folder check
        return _train_locked(cfg, run_dir, resume)


def _train_locked(cfg: DetectorConfig, run_dir: Path, resume: bool) -> Path:
    resume = _prepare_run_dir(run_dir, resume)
    if not resume:
        save_config(cfg, run_dir / "config.yaml")
    ds, root, dataset = load_dataset(cfg, run_dir)
    # The tracker starts before ultralytics is imported (see module docstring).
    tracker = make_tracker(cfg.tracking, run_dir, cfg.name, "train-detector", dump_config(cfg),
                           tags=["detection", dataset, cfg.data.inset_mode])
    try:
        return _run(cfg, run_dir, ds, root, dataset, tracker, resume)
    finally:
        tracker.finish()


def _run(cfg, run_dir: Path, ds, root: Path, dataset: str, tracker: Tracker, resume: bool) -> Path:
    from kvasir_ml.detection.scoring import score_split

    # Boxes as they were before any verification: the detector is scored on folder/expert boxes
    # (eval.ground_truth=verified is the classifier's switch; metrics say "folder").
    ds = folder_view(_sample(ds, cfg.data.max_images, cfg.data.split_seed))
    split = resolve_split(ds, cfg.data, run_dir)
    export = _export(ds, split.splits, root, run_dir, cfg, resume)
    tracker.artifact(run_dir / "split.json", name=f"{cfg.name}-split", type="dataset",
                     metadata={"sha256": split.sha256, "dataset": dataset})
    timing = fit(cfg, export, run_dir, tracker, resume=resume)
    best = run_dir / "checkpoints" / "best.pt"
    metrics: dict[str, Any] = {
        "kind": "detector", "task": "detection", "model": Path(cfg.model.weights or cfg.model.arch).stem,
        "inset_mode": cfg.data.inset_mode, "seed": cfg.train.seed, "dataset": dataset,
        "split_sha256": split.sha256, "device": timing["device"], "imgsz": cfg.train.imgsz,
        "n_images": {k: len(v) for k, v in export.file_names.items()}, "n_boxes": export.n_boxes,
        "ground_truth": {"kind": "folder", "n_test_images": len(export.file_names.get("test", [])),
                         "n_test_left_out": 0},
        "history": history_from_results(run_dir / "ultralytics" / "results.csv", timing["epochs"]),
    }
    for name in ("val", "test"):
        metrics[name] = score_split(best, ds, export, name, cfg, run_dir, tracker)
    metrics["epoch_time_s_mean"] = timing["epoch_time_s_mean"]
    write_metrics(run_dir / "metrics.json", metrics)
    tracker.summary({f"{s}/{k}": v for s in ("val", "test") for k, v in metrics[s].items() if isinstance(v, float)})
    per_class = metrics["test"].get("per_class_ap", {})
    tracker.table("test/per_class_ap", ["class", "ap", "ap50"],
                  [[c, ap, metrics["test"]["per_class_ap50"].get(c)] for c, ap in per_class.items()])
    if cfg.tracking.log_model:
        tracker.artifact(best, name=f"{cfg.name}-model", type="model", metadata={"test": metrics["test"]})
    log.info("detector run %s: test AP %s AP50 %s", run_dir, metrics["test"].get("coco_ap"), metrics["test"].get("coco_ap50"))
    return run_dir


def _export(ds, splits, root: Path, run_dir: Path, cfg: DetectorConfig, resume: bool) -> YoloExport:
    out = run_dir / "dataset"
    if resume and out.exists():
        shutil.rmtree(out)  # derived data: rebuilt identically from the saved split
    export = export_yolo(ds, splits, root, out, link_mode=cfg.data.link_mode, inset_mode=cfg.data.inset_mode)
    if export.masked_overlaps:
        log.warning("%d images have a box overlapping the blacked-out inset region (listed in %s)",
                    len(export.masked_overlaps), out / "manifest.json")
    return export
