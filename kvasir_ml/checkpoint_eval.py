"""``evaluate_checkpoint``: score a trained classifier or detector on a split or another dataset.

torchvision's ``--test-only`` and ultralytics' ``yolo val`` for this project's checkpoints.
Without ``canonical`` the checkpoint's own run supplies the data and the split (the run
folder holding ``checkpoints/<ckpt>``: its config names the canonical file, its
``split.json`` the split), so the run's test numbers come back exactly. With ``canonical``
another file is scored: a split of it (``split_file``) or all of it (cross-dataset, e.g. a
Kvasir-SEG detector on CVC-ClinicDB indexed with ``kvasir-ml data index cvc-clinicdb``).
``OUT/metrics.json`` has the schema of a training run's, the scored subset under its own
key (``test``, ``val`` or ``all``), plus ``evaluated`` (checkpoint, data, split, subset).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.image_root import image_root
from kvasir_ml.data.splits import Split, load_split
from kvasir_ml.io import sha256_file
from kvasir_ml.results_schema import write_metrics

log = logging.getLogger(__name__)

SUBSETS = ("test", "val", "all")


class EvalError(ValueError):
    """The checkpoint, data or split cannot be scored as asked; the message names which and why."""


def checkpoint_kind(ckpt: Path) -> str:
    """``classifier`` (a kvasir_ml classifier checkpoint loads with ``weights_only``) or ``detector``."""
    from kvasir_ml.train.checkpoint import CheckpointError, load_checkpoint

    if not ckpt.is_file():
        raise EvalError(f"checkpoint {ckpt} does not exist")
    try:
        load_checkpoint(ckpt)
        return "classifier"
    except CheckpointError:
        return "detector"  # detector_config checks it and says so when it is neither


def _run_dir(ckpt: Path) -> Path | None:
    """The run folder of ``RUN/checkpoints/<name>.pt`` (None for a checkpoint outside a run)."""
    run = ckpt.parent.parent
    return run if ckpt.parent.name == "checkpoints" and (run / "config.yaml").is_file() else None


def _split(split_file: str | Path | None, run_dir: Path | None, own_data: bool, names: set[str]) -> Split | None:
    if split_file is not None:
        source: str | Path = split_file
    elif own_data and run_dir is not None and (run_dir / "split.json").is_file():
        source = run_dir / "split.json"
    else:
        return None
    split = load_split(source)
    missing = [f for files in split.splits.values() for f in files if f not in names]
    if missing:
        raise EvalError(f"{split_file or source}: {len(missing)} files are not in the scored "
                        f"dataset, e.g. {missing[:3]}")
    return split


def _data(data_cfg: Any, run_dir: Path | None, canonical: str | Path | None,
          root: str | Path | None) -> tuple[Path, Path, bool]:
    """(canonical file, image root, whether it is the run's own data)."""
    if canonical is not None:
        path = Path(canonical)
        if not path.is_file():
            raise EvalError(f"--data {path} does not exist")
        return path, image_root(path, root), False
    if run_dir is None:
        raise EvalError("the checkpoint is not inside a run folder (RUN/checkpoints/*.pt with RUN/config.yaml): "
                        "name the data to score with --data (and --split)")
    from kvasir_ml.data.resolve import resolve_dataset

    path, own_root = resolve_dataset(data_cfg, run_dir, may_write=False)
    if not path.is_file():
        raise EvalError(f"{run_dir}: the run's data {path} does not exist any more; name it with --data")
    return path, Path(root) if root else own_root, True


def evaluate_checkpoint(ckpt: str | Path, out_dir: str | Path, canonical: str | Path | None = None,
                        root: str | Path | None = None, split_file: str | Path | None = None,
                        subset: str | None = None, device: str | None = None, trust: bool = False) -> Path:
    """Score a classifier or detector checkpoint; writes ``out_dir/metrics.json``.

    Args:
        ckpt: ``RUN/checkpoints/best.pt`` (or ``last.pt``) of a classifier or detector run.
        out_dir: new or empty folder for metrics.json, predictions and the image cache/export.
        canonical: the canonical file to score on; None = the run's own data and split.
        root: its image folder (default: the folder the file remembers, else its own folder).
        split_file: a split of ``canonical`` (default: the run's split.json for its own data).
        subset: ``test`` (default with a split), ``val``, or ``all`` (every image; the default
            without a split).
        device: overrides the run's device (``cpu``, ``cuda``, ``auto``).
        trust: skip the safety check of a detector checkpoint (``--trust-checkpoint``).

    Returns:
        ``out_dir/metrics.json``.

    Raises:
        EvalError: missing checkpoint or data, a split naming unknown images, a subset
            without a split, a non-empty ``out_dir``.
    """
    ckpt, out = Path(ckpt), Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise EvalError(f"{out}: folder exists and is not empty; give a new --out (nothing is overwritten)")
    kind, run_dir = checkpoint_kind(ckpt), _run_dir(ckpt)
    if kind == "classifier":
        from kvasir_ml.train.checkpoint import load_checkpoint
        from kvasir_ml.train.config import ClassifierConfig

        cfg: Any = ClassifierConfig.model_validate(load_checkpoint(ckpt)["config"])
    else:
        from kvasir_ml.detection.evaluate_checkpoint import detector_config

        cfg = detector_config(ckpt, trust)
    path, data_root, own = _data(cfg.data, run_dir, canonical, root)
    ds = load_canonical(path)
    if own and kind == "detector" and cfg.data.max_images is not None:  # the run's own sample of its file
        names = sorted(img["file_name"] for img in ds.images)
        if cfg.data.max_images < len(names):
            ds = ds.subset(random.Random(cfg.data.split_seed).sample(names, cfg.data.max_images))
    split = _split(split_file, run_dir, own, {img["file_name"] for img in ds.images})
    subset = subset or ("test" if split is not None else "all")
    if subset not in SUBSETS:
        raise EvalError(f"--subset {subset!r}: expected one of {', '.join(SUBSETS)}")
    if subset != "all" and split is None:
        raise EvalError(f"--subset {subset} needs a split: give --split FILE (or score --subset all)")
    name = "synthetic" if own and cfg.data.is_synthetic else str(ds.info.get("source") or path.stem)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "classifier":
        from kvasir_ml.train.evaluate_checkpoint import evaluate_classifier_checkpoint

        metrics = evaluate_classifier_checkpoint(ckpt, path, data_root, split, subset, out, name, device)
    else:
        from kvasir_ml.data.verified import folder_view
        from kvasir_ml.detection.evaluate_checkpoint import evaluate_detector_checkpoint

        metrics = evaluate_detector_checkpoint(ckpt, cfg, folder_view(ds), data_root, split, subset, out, name, device)
    metrics["evaluated"] = {
        "checkpoint": str(ckpt), "checkpoint_sha256": sha256_file(ckpt), "canonical": str(path),
        "canonical_sha256": sha256_file(path), "root": str(data_root), "own_data": own,
        "split": str(split_file) if split_file else (str(run_dir / "split.json") if split is not None and run_dir is not None else None),
        "subset": subset,
    }
    target = out / "metrics.json"
    write_metrics(target, metrics)
    log.info("%s %s on %s (%s): %s", kind, ckpt, path, subset, target)
    return target
