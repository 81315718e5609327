"""Score a trained classifier checkpoint on a split of a canonical file (``kvasir-ml eval``).

The training's own path, from records to metrics: ``prepare.split_records`` (same
ground-truth rule), ``prepare.cache_and_pack`` (same decode), the eval loader the run used
(same batch size and order), ``loop.evaluate`` (same AMP and memory format) and
``report.score`` with the calibration, decoder and thresholds ``best.pt`` carries (fitted
on the run's val split, never refitted here). So scoring a run's own test split gives the
run's ``metrics.json["test"]`` again, number for number.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.splits import Split
from kvasir_ml.data.verified import folder_view
from kvasir_ml.device import resolve_device
from kvasir_ml.train import report
from kvasir_ml.train.loop import evaluate
from kvasir_ml.train.classify import load_classifier
from kvasir_ml.train.prepare import (
    RunData,
    batch_loader,
    cache_and_pack,
    class_label_matrix,
    split_records,
)

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _runtime_like_training(cfg: Any) -> Iterator[None]:
    """The process-wide settings the run scored under (threads, deterministic algorithms, cuDNN
    autotuning: ``run._Trainer``), put back afterwards."""
    rt = cfg.runtime
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    try:
        if rt.threads:
            torch.set_num_threads(rt.threads)
        if rt.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = not rt.deterministic
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
        torch.backends.cudnn.benchmark = saved[2]


def evaluate_classifier_checkpoint(ckpt: Path, canonical: Path, root: Path, split: Split | None,
                                   subset: str, out_dir: Path, dataset: str,
                                   device: str | None = None) -> dict[str, Any]:
    """Score ``ckpt`` on one subset of a canonical file; returns the metrics.json body.

    Args:
        ckpt: a classifier checkpoint (``best.pt`` of a run).
        canonical: the canonical file to score on; ``root`` its image folder.
        split: the split whose ``subset`` is scored; None with ``subset="all"``.
        subset: ``test``, ``val`` or ``all`` (every image of the file); the metrics land under
            this key.
        out_dir: where the image cache goes (``out_dir/cache``).
        dataset: the dataset name to record.
        device: overrides the checkpoint's ``runtime.device``.
    """
    model, cfg, state = load_classifier(ckpt, torch.device("cpu"))
    dev = resolve_device(device or cfg.runtime.device)  # default: the run's own device rule
    model = model.to(dev)
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    task, label_names, class_names = cfg.model.task, list(state["label_names"]), list(state["class_names"])
    ds = load_canonical(canonical)
    files = [img["file_name"] for img in ds.images] if split is None else list(split.splits.get(subset, []))
    if not files:
        raise ValueError(f"{canonical}: the {subset} subset holds no images")
    # "test" and "all" are scored sets (eval.ground_truth applies), "val" is not: as in training
    records, file_names, ground_truth = split_records(cfg, ds, folder_view(ds), {subset: files}, root, label_names,
                                                      str(canonical), scored=("test", "all"))
    cache, packs = cache_and_pack(cfg, records, out_dir / "cache")
    data = RunData(dataset, canonical, split, label_names, class_names, class_label_matrix(cfg, label_names),
                   records, cache, packs, ground_truth, file_names)
    from kvasir_ml.train.data import ClassifierDataset

    ds_eval = ClassifierDataset(records[subset], packs[subset], cfg.model.inset_mode, cfg.model.branch_size_px)
    loader = batch_loader(ds_eval, torch.utils.data.SequentialSampler(ds_eval), 2 * cfg.runtime.batch_size, False,
                          0, dev.type == "cuda")
    with _runtime_like_training(cfg):
        outputs = evaluate(model, loader, dev, task, None, cfg.runtime.amp, cfg.runtime.channels_last)["outputs"]
    post = state["posthoc"]
    scores = report.score(task, outputs, subset, data, post)
    report.save_predictions(out_dir / f"predictions_{subset}.npz", task, outputs, data, post, split=subset)
    m = cfg.model
    return {
        "kind": "classifier", "task": task, "model": m.arch, "inset_mode": m.inset_mode,
        "seed": cfg.runtime.seed, "dataset": dataset, "split_sha256": split.sha256 if split is not None else None,
        "device": str(dev), "best_epoch": int(state["epoch"]),
        "n_images": {subset: len(records[subset])}, "ground_truth": ground_truth,
        "label_names": label_names, "class_names": class_names,
        "thresholds_tuned_on": "val", "calibrated_on": "val",
        "selection": report.selection_record(state.get("select", cfg.eval.select), state),
        "history": list(state.get("history", [])), subset: scores,
    }
