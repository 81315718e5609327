"""From config to tensors: dataset (or synthetic data), split, cache, packs, records and loaders.

The loaders hand the Dataset whole batches of indices (``batch_size=None`` + ``BatchSampler``):
a worker slices one batch out of the split's memory-mapped pack and masks the inset, nothing
else. Workers are persistent (no restart each epoch), batches come in pinned memory on CUDA,
and each worker keeps ``PREFETCH_BATCHES`` batches ready. Workers draw no random numbers
(augmentation runs on the device, ``train.augment``), so the worker count never changes a
run's result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, Sampler, SequentialSampler

from kvasir_ml.data.class_source import check_class_source
from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.resolve import dataset_name, resolve_dataset, resolve_split
from kvasir_ml.data.verified import folder_view, select_test_images, verified_class_indices
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.train.config import ClassifierConfig
from kvasir_ml.train.data import (
    ClassifierDataset,
    Records,
    active_label_names,
    build_records,
    fill_missing_insets,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
PREFETCH_BATCHES = 4  # per worker: enough to ride out a slow batch without holding much memory


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
    packs: dict[str, Path]  # split -> its (N, S, S, 3) uint8 pack (ImageCache.pack)
    ground_truth: dict[str, Any] = field(default_factory=dict)  # data.verified.select_test_images' record
    file_names: dict[str, list[str]] = field(default_factory=dict)  # split -> its images in record order


def prepare_data(cfg: ClassifierConfig, run_dir: Path, may_write: bool = True) -> RunData:
    """Build split records, the image cache (warmed) and one pack per split for a run.

    Raises:
        ValueError: missing canonical file, a split naming unknown images, an empty split,
            a ``class_source`` that drops classes of the file (``ClassSourceError``).
    """
    taxonomy = load_taxonomy()
    canonical, root = resolve_dataset(cfg.data, run_dir, may_write)
    ds = load_canonical(canonical)
    check_class_source(ds, cfg.data.class_source, taxonomy, str(canonical))  # before anything is written
    folder = folder_view(ds)  # verified images with their folder labels: train, val and folder-mode test
    split = resolve_split(folder, cfg.data, run_dir, may_write)
    label_names = active_label_names(folder, taxonomy)
    class_names = list(taxonomy.source(cfg.data.class_source).classes)
    for name in SPLITS:
        if not split.splits.get(name):
            raise ValueError(f"{canonical}: the {name} split is empty; use more images or other fractions")
    records, file_names, ground_truth = split_records(cfg, ds, folder, {n: split.splits[n] for n in SPLITS}, root,
                                                      label_names, str(canonical))
    cache, packs = cache_and_pack(cfg, records, Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache")
    name = dataset_name(cfg.data, ds, canonical)
    return RunData(name, canonical, split, label_names, class_names, class_label_matrix(cfg, label_names), records,
                   cache, packs, ground_truth, file_names)


def class_label_matrix(cfg: ClassifierConfig, label_names: list[str]) -> np.ndarray:
    """(n_classes, n_labels): the label set of each class of ``data.class_source``, over ``label_names``."""
    taxonomy = load_taxonomy()
    active = [taxonomy.label_index(n) for n in label_names]
    return taxonomy.class_label_matrix(cfg.data.class_source)[:, active]


def split_records(cfg: ClassifierConfig, ds: Any, folder: Any, files_by_split: dict[str, list[str]], root: Path,
                  label_names: list[str], origin: str,
                  scored: tuple[str, ...] = ("test",)) -> tuple[dict[str, Records], dict[str, list[str]], dict]:
    """Records of each split in ``files_by_split`` (training and ``kvasir-ml eval`` alike).

    Splits named in ``scored`` follow ``eval.ground_truth``: folder labels, or only the
    verified images with their verified labels (``data.verified.select_test_images``); the
    others use the folder labels of ``folder`` (``data.verified.folder_view(ds)``).

    Returns:
        ``(records, file names in record order, ground-truth record of the scored split)``.
    """
    taxonomy = load_taxonomy()
    records, file_names = {}, {}
    ground_truth: dict[str, Any] = {}
    for name, split_files in files_by_split.items():
        files, source = list(split_files), folder
        if name in scored:
            files, ground_truth = select_test_images(ds, files, cfg.eval.ground_truth, origin)
            source = ds if ground_truth["kind"] == "verified" else folder
        records[name] = build_records(source, files, root, label_names, cfg.data.class_source, taxonomy)
        file_names[name] = files
        if source is not folder:  # the single-label target follows the verified labels too
            records[name].y_class = verified_class_indices(ds, files, cfg.data.class_source, taxonomy)
    return records, file_names, ground_truth


def cache_and_pack(cfg: ClassifierConfig, records: dict[str, Records], cache_dir: Path) -> tuple[Any, dict[str, Path]]:
    """Decode every image once into the cache, measure unmeasured insets, pack each split."""
    from kvasir_ml.data.cache import ImageCache

    cache = ImageCache(cache_dir, cfg.data.image_size_px)
    cache.warm([p for r in records.values() for p in r.paths])
    n_measured = sum(fill_missing_insets(r, cache) for r in records.values())
    if n_measured:
        log.info("inset state measured on %d images the canonical file left unmeasured", n_measured)
    n_no_class = sum(int((r.y_class < 0).sum()) for r in records.values())
    if n_no_class:
        log.warning("%d images have no %s class: single-label training and metrics skip them",
                    n_no_class, cfg.data.class_source)
    return cache, {split_name: cache.pack(r.paths) for split_name, r in records.items()}


def batch_loader(dataset: ClassifierDataset, sampler: Sampler, batch_size: int, drop_last: bool, workers: int,
                 pin_memory: bool) -> DataLoader:
    """A DataLoader that gives ``dataset`` whole batches of indices (see the module docstring).

    The DataLoader's own generator only seeds worker processes (which draw nothing): it is a
    private one, so creating an iterator never consumes the global or the shuffling RNG.
    """
    extra: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": PREFETCH_BATCHES} if workers > 0 else {}
    return DataLoader(dataset, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last),
                      num_workers=workers, pin_memory=pin_memory, generator=torch.Generator(), **extra)


def make_loaders(cfg: ClassifierConfig, data: RunData, device: torch.device, world_size: int = 1,
                 rank: int = 0) -> tuple[DataLoader, torch.Generator, dict[str, DataLoader]]:
    """Train loader (shuffled by a generator the caller reseeds every epoch) and eval loaders.

    ``runtime.batch_size`` is per process. With ``world_size`` > 1 the train split is sharded
    by ``DistributedSampler`` (padded so every rank gets the same number of images, hence the
    same number of steps); the last partial batch of a shard is dropped unless the shard is
    smaller than one batch (then it is the only batch). Eval loaders cover whole splits and
    exist on rank 0 only (it alone evaluates).

    Returns:
        (train loader, its shuffling generator, {"val", "test"} eval loaders; empty on other ranks).
    """
    rt, mode, branch_px = cfg.runtime, cfg.model.inset_mode, cfg.model.branch_size_px
    pin = device.type == "cuda"
    train_ds = ClassifierDataset(data.records["train"], data.packs["train"], mode, branch_px)
    generator = torch.Generator()
    sampler: Sampler = (DistributedSampler(train_ds, world_size, rank, shuffle=True, seed=rt.seed) if world_size > 1
                        else RandomSampler(train_ds, generator=generator))
    shard = len(sampler)  # type: ignore[arg-type]
    train = batch_loader(train_ds, sampler, rt.batch_size, shard > rt.batch_size, rt.workers, pin)
    evals: dict[str, DataLoader] = {}
    for name in ("val", "test") if rank == 0 else ():  # only rank 0 evaluates
        ds = ClassifierDataset(data.records[name], data.packs[name], mode, branch_px)
        evals[name] = batch_loader(ds, SequentialSampler(ds), 2 * rt.batch_size, False, rt.workers, pin)
    return train, generator, evals
