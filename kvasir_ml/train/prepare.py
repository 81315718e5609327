"""From config to tensors: dataset (or synthetic data), split, cache, records and loaders."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.resolve import dataset_name, resolve_dataset, resolve_split
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.train.config import ClassifierConfig
from kvasir_ml.train.data import (
    ClassifierDataset,
    Records,
    active_label_names,
    build_augmentation,
    build_records,
    fill_missing_insets,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class RunData:
    """Everything about the data a run needs, built once on every process."""

    dataset_name: str
    canonical_path: Path
    split: Any  # kvasir_ml.data.splits.Split
    label_names: list[str]
    class_names: list[str]
    class_label_matrix: np.ndarray  # (n_classes, n_labels) over the active labels
    records: dict[str, Records]
    cache: Any  # kvasir_ml.data.cache.ImageCache


def prepare_data(cfg: ClassifierConfig, run_dir: Path, may_write: bool = True) -> RunData:
    """Build split records and the image cache (warmed) for a run.

    Raises:
        ValueError: missing canonical file, a split naming unknown images, an empty split.
    """
    taxonomy = load_taxonomy()
    canonical, root = resolve_dataset(cfg.data, run_dir, may_write)
    ds = load_canonical(canonical)
    split = resolve_split(ds, cfg.data, run_dir, may_write)
    label_names = active_label_names(ds, taxonomy)
    class_names = list(taxonomy.source(cfg.data.class_source).classes)
    active = [taxonomy.label_index(n) for n in label_names]
    matrix = taxonomy.class_label_matrix(cfg.data.class_source)[:, active]
    records = {}
    for name in SPLITS:
        files = list(split.splits.get(name, []))
        if not files:
            raise ValueError(f"{canonical}: the {name} split is empty; use more images or other fractions")
        records[name] = build_records(ds, files, root, label_names, cfg.data.class_source, taxonomy)
    from kvasir_ml.data.cache import ImageCache

    cache = ImageCache(Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache", cfg.data.image_size_px)
    all_paths = [p for r in records.values() for p in r.paths]
    cache.warm(all_paths)
    n_measured = sum(fill_missing_insets(r, cache) for r in records.values())
    if n_measured:
        log.info("inset state measured on %d images the canonical file left unmeasured", n_measured)
    n_no_class = sum(int((r.y_class < 0).sum()) for r in records.values())
    if n_no_class:
        log.warning("%d images have no %s class: single-label training and metrics skip them",
                    n_no_class, cfg.data.class_source)
    name = dataset_name(cfg.data, ds, canonical)
    return RunData(name, canonical, split, label_names, class_names, matrix, records, cache)


def make_loaders(cfg: ClassifierConfig, data: RunData, device: torch.device, world_size: int = 1,
                 rank: int = 0) -> tuple[DataLoader, torch.Generator, dict[str, DataLoader]]:
    """Train loader (shuffled by a generator the caller reseeds every epoch) and eval loaders.

    Returns:
        (train loader, its generator, {"train_eval"?, "val", "test"} eval loaders in split order).
    """
    rt, mode, branch_px = cfg.runtime, cfg.model.inset_mode, cfg.model.branch_size_px
    train_ds = ClassifierDataset(data.records["train"], data.cache, mode, branch_px, build_augmentation(cfg.aug))
    generator = torch.Generator()
    sampler = DistributedSampler(train_ds, world_size, rank, shuffle=True, seed=rt.seed) if world_size > 1 else None
    common: dict[str, Any] = {"num_workers": rt.workers, "pin_memory": device.type == "cuda"}
    if rt.workers > 0:
        common["prefetch_factor"] = 4
    train = DataLoader(train_ds, batch_size=rt.batch_size, shuffle=sampler is None, sampler=sampler,
                       generator=generator, drop_last=len(train_ds) > rt.batch_size, **common)
    evals = {
        name: DataLoader(ClassifierDataset(data.records[name], data.cache, mode, branch_px), batch_size=2 * rt.batch_size,
                         shuffle=False, **common)
        for name in ("val", "test")
    }
    return train, generator, evals
