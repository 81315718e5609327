"""Classifier data: records from the canonical file, the Dataset, and augmentations.

Order of operations per image (the same in training, evaluation and ``predict``):

1. the cached square image (``ImageCache``: decoded once, resized to ``image_size_px``);
2. the inset box (canonical ``inset_box`` at original resolution, else the nominal region)
   scaled to the cache resolution;
3. ``masked``/``branch``: the region is blacked out on EVERY image, so the mask itself
   carries no signal; ``branch`` also crops it (before masking) for the inset branch;
4. only then geometric + colour augmentation of the main image (the crop is not rotated:
   the panel's drawing has a fixed orientation).

Images stay ``uint8`` until the model normalises them on the device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.inset import crop_inset, detect_inset, hiding_box_xywh_px, mask_inset
from kvasir_ml.models.classifier import INSET_STATES
from kvasir_ml.taxonomy import Taxonomy, TaxonomyError
from kvasir_ml.train.config import AugConfig

log = logging.getLogger(__name__)


@dataclass
class Records:
    """Column-wise table of one split's images (everything a Dataset needs)."""

    paths: list[Path]
    sizes: list[tuple[int, int]]  # original (width, height) px
    inset_states: list[str | None]
    inset_boxes: list[tuple[float, float, float, float] | None]  # original px
    y_labels: np.ndarray  # (N, L) 0/1 float32 over the active labels
    y_class: np.ndarray  # (N,) int64 class index, -1 = no class of the class source

    def __len__(self) -> int:
        return len(self.paths)


def active_label_names(ds: CanonicalDataset, taxonomy: Taxonomy) -> list[str]:
    """Labels with at least one positive image in the dataset, in taxonomy order."""
    present = {name for img in ds.images for name in img["labels"]}
    return [name for name in taxonomy.label_names if name in present]


def class_index(img: dict[str, Any], class_source: str, taxonomy: Taxonomy) -> int:
    """Index of the image's class among ``taxonomy.source(class_source).classes``, or -1.

    A class of the same name counts (Kvasir-SEG's and the synthetic source's ``polyps``);
    otherwise the class whose label set equals the image's source-class label set
    (HyperKvasir ``cecum`` -> ``normal-cecum``).
    """
    classes = taxonomy.source(class_source).classes
    source, source_class = img.get("source"), img.get("source_class")
    if not source_class:
        return -1
    if source_class in classes:
        return classes.index(source_class)
    try:
        wanted = set(taxonomy.labels_for(source, source_class))
    except TaxonomyError:  # unknown source/class: the image simply has no single-label target
        return -1
    matches = [i for i, c in enumerate(classes) if set(taxonomy.labels_for(class_source, c)) == wanted]
    return matches[0] if len(matches) == 1 else -1


def build_records(ds: CanonicalDataset, file_names: list[str], root: Path, label_names: list[str],
                  class_source: str, taxonomy: Taxonomy) -> Records:
    """Records of the given images (split order kept).

    Raises:
        ValueError: a file name of the split is not in the canonical file.
    """
    by_file = ds.image_by_file
    missing = [f for f in file_names if f not in by_file]
    if missing:
        raise ValueError(f"split names {len(missing)} images absent from the canonical file, e.g. {missing[:3]}")
    index = {name: i for i, name in enumerate(label_names)}
    images = [by_file[f] for f in file_names]
    y = np.zeros((len(images), len(label_names)), dtype=np.float32)
    for row, img in enumerate(images):
        for name in img["labels"]:
            if name in index:
                y[row, index[name]] = 1.0
    return Records(
        paths=[root / img["file_name"] for img in images],
        sizes=[(int(img["width"]), int(img["height"])) for img in images],
        inset_states=[img.get("inset") for img in images],
        inset_boxes=[tuple(img["inset_box"]) if img.get("inset_box") else None for img in images],
        y_labels=y,
        y_class=np.array([class_index(img, class_source, taxonomy) for img in images], dtype=np.int64),
    )


def fill_missing_insets(records: Records, cache: Any) -> int:
    """Detect the inset (on the cached image) where the canonical file did not measure it.

    Returns:
        How many images were measured here.
    """
    n = 0
    for i, state in enumerate(records.inset_states):
        if state is not None:
            continue
        rgb = cache.get(records.paths[i])
        found = detect_inset(rgb)
        records.inset_states[i] = found.state
        if found.box_xywh_px is not None:
            w, h = records.sizes[i]
            sx, sy = w / rgb.shape[1], h / rgb.shape[0]
            x, y, bw, bh = found.box_xywh_px
            records.inset_boxes[i] = (x * sx, y * sy, bw * sx, bh * sy)
        n += 1
    return n


def scaled_inset_box(size: tuple[int, int], box: tuple | None, shape_hw: tuple[int, int]) -> tuple[float, ...]:
    """The hidden inset region (``hiding_box_xywh_px``: nominal ∪ detected, plus a margin)
    in the coordinates of a resized image."""
    width, height = size
    box = hiding_box_xywh_px(width, height, box)
    sx, sy = shape_hw[1] / width, shape_hw[0] / height
    x, y, w, h = box
    return (x * sx, y * sy, max(w * sx, 1.0), max(h * sy, 1.0))


def inset_inputs(rgb: np.ndarray, size: tuple[int, int], state: str | None, box: tuple | None,
                 mode: str, branch_px: int) -> dict[str, torch.Tensor]:
    """Model inputs of one resized image before augmentation.

    Args:
        rgb: (S, S, 3) uint8 resized image.
        size: original (width, height) px, the frame ``box`` refers to.
        state: inset state (green | black | none).
        box: inset box at original resolution, or None (nominal region is used).
        mode: raw | masked | branch.
        branch_px: side of the inset crop (branch mode).

    Returns:
        ``{"image": (3, S, S) uint8}`` plus, in branch mode, ``"inset"`` (3, b, b) uint8 and
        ``"inset_state"`` (3,) float one-hot.
    """
    if mode == "raw":
        return {"image": torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()}
    small_box = scaled_inset_box(size, box, rgb.shape[:2])
    out = {"image": torch.from_numpy(mask_inset(rgb, small_box)).permute(2, 0, 1).contiguous()}
    if mode == "branch":
        crop = torch.from_numpy(crop_inset(rgb, small_box)).permute(2, 0, 1)
        out["inset"] = TF.resize(crop, [branch_px, branch_px], antialias=True)
        onehot = torch.zeros(len(INSET_STATES))
        onehot[INSET_STATES.index(state if state in INSET_STATES else "none")] = 1.0
        out["inset_state"] = onehot
    return out


def build_augmentation(cfg: AugConfig) -> v2.Compose | None:
    """Flips, any-angle rotation (black fill, like the endoscope border) and colour jitter."""
    if not cfg.enabled:
        return None
    ops: list[Any] = []
    if cfg.hflip:
        ops.append(v2.RandomHorizontalFlip())
    if cfg.vflip:
        ops.append(v2.RandomVerticalFlip())
    if cfg.rotate_deg > 0:
        ops.append(v2.RandomRotation(cfg.rotate_deg, interpolation=v2.InterpolationMode.BILINEAR, fill=0))
    if max(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue) > 0:
        ops.append(v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue))
    return v2.Compose(ops) if ops else None


class ClassifierDataset(Dataset):
    """One split as model inputs + targets, read from the image cache.

    Items: ``{"image", ["inset", "inset_state"], "labels" (L,) float, "class" int64, "index" int}``.
    """

    def __init__(self, records: Records, cache: Any, inset_mode: str, branch_px: int,
                 augment: v2.Compose | None = None):
        self.records, self.cache = records, cache
        self.inset_mode, self.branch_px, self.augment = inset_mode, branch_px, augment

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.records
        rgb = self.cache.get(r.paths[i])
        item: dict[str, Any] = inset_inputs(rgb, r.sizes[i], r.inset_states[i], r.inset_boxes[i],
                                            self.inset_mode, self.branch_px)
        if self.augment is not None:
            item["image"] = self.augment(item["image"])
        item["labels"] = torch.from_numpy(r.y_labels[i])
        item["class"] = torch.tensor(int(r.y_class[i]))
        item["index"] = i
        return item
