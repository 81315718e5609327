"""Score a trained detector checkpoint on a split of a canonical file (``kvasir-ml eval``).

The training's own path: the scored images are exported as the run exported them
(``export.export_yolo``, the run's inset mode) and ``scoring.score_split`` predicts,
writes COCO results and scores them with pycocotools and ultralytics' ``val``, with the
run's ``eval.*`` settings. So a run's own test split gives its ``metrics.json["test"]``
again (the inference speed aside). Boxes of another dataset come from its canonical file
(e.g. CVC-ClinicDB's, derived from its masks by ``kvasir-ml data index cvc-clinicdb``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.splits import Split
from kvasir_ml.detection.config import DetectorConfig
from kvasir_ml.detection.yolo_dataset import export_yolo
from kvasir_ml.detection.safe_load import check_detector_checkpoint, load_detector_checkpoint
from kvasir_ml.tracking import NullTracker


def detector_config(ckpt: Path, trust: bool = False) -> DetectorConfig:
    """The resolved config a detector checkpoint of this project carries (checked before loading).

    Raises:
        ValueError: the checkpoint was not written by a kvasir_ml detector run.
    """
    check_detector_checkpoint(ckpt, trust)
    meta = load_detector_checkpoint(ckpt).get("kvasir_ml")
    if not isinstance(meta, dict) or "config" not in meta:
        raise ValueError(f"{ckpt}: no kvasir_ml metadata (not written by `kvasir-ml train detector`); "
                         "score other ultralytics weights with `yolo val`")
    return DetectorConfig.model_validate(meta["config"])


def evaluate_detector_checkpoint(ckpt: Path, cfg: DetectorConfig, ds: CanonicalDataset, root: Path,
                                 split: Split | None, subset: str, out_dir: Path, dataset: str,
                                 device: str | None = None) -> dict[str, Any]:
    """Score ``ckpt`` on one subset of ``ds``; returns the metrics.json body.

    Args:
        ckpt: a detector checkpoint (``best.pt`` of a run), already checked (``detector_config``).
        cfg: its config (``detector_config``).
        ds: the dataset (folder boxes: ``data.verified.folder_view``) the subset comes from.
        root: the folder its file names are relative to.
        split: the split whose ``subset`` is scored; None with ``subset="all"``.
        subset: ``test``, ``val`` or ``all``; the metrics land under this key.
        out_dir: the export (``dataset/``), COCO results (``predictions/``), ultralytics'
            val folders and the overlay plots go here.
        dataset: the dataset name to record.
        device: overrides the checkpoint's ``train.device``.
    """
    from kvasir_ml.detection.scoring import score_split

    if device is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": device})})
    files = [img["file_name"] for img in ds.images] if split is None else list(split.splits.get(subset, []))
    if not files:
        raise ValueError(f"the {subset} subset holds no images")
    scored_as = "test" if subset == "all" else subset  # ultralytics scores a train/val/test folder
    export = export_yolo(ds, {scored_as: files}, root, out_dir / "dataset", link_mode=cfg.data.link_mode,
                         inset_mode=cfg.data.inset_mode, required=(scored_as,))
    scores = score_split(ckpt, ds, export, scored_as, cfg, out_dir, NullTracker())
    return {
        "kind": "detector", "task": "detection", "model": Path(cfg.model.weights or cfg.model.arch).stem,
        "inset_mode": cfg.data.inset_mode, "seed": cfg.train.seed, "dataset": dataset,
        "split_sha256": split.sha256 if split is not None else None, "device": cfg.train.device,
        "imgsz": cfg.train.imgsz, "n_images": {subset: len(files)}, "n_boxes": {subset: export.n_boxes[scored_as]},
        "ground_truth": {"kind": "folder", "n_test_images": len(files), "n_test_left_out": 0},
        "history": [], subset: scores,
    }
