"""Classifier data: records from the canonical file, the Dataset, and augmentations.

Order of operations per image (the same in training, evaluation and ``predict``):

1. the cached square image (``ImageCache``: decoded once, resized to ``image_size_px``);
2. the hidden region (``data.inset.hiding_box_xywh_px``: set by the original frame size
   alone, never by the detected inset) scaled to the cache resolution;
3. ``masked``/``branch``: the region is blacked out on EVERY image, the same pixels whatever
   the inset state, so the mask itself carries no signal; ``branch`` also crops it (before
   masking) for the inset branch;
4. only then geometric + colour augmentation of the main image (the crop is not rotated:
   the panel's drawing has a fixed orientation) — on whole batches on the device
   (``kvasir_ml.train.augment``), after the loader has delivered the masked batch.

Training reads a split's *pack* (all its cached images in one ``.npy``): a DataLoader worker
reads a batch's images straight into the batch buffer (one ``pread`` each, no memory map, so
a worker's RSS does not grow with the pack); images stay ``uint8`` until the device.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info
from torchvision.transforms.v2 import functional as TF

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.class_source import single_label_class
from kvasir_ml.data.inset import INSET_STATES, box_slices, detect_inset, hiding_box_xywh_px
from kvasir_ml.taxonomy import Taxonomy

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
    """Index of the image's class among ``taxonomy.source(class_source).classes``, or -1
    (``data.class_source.single_label_class``: the class of the same name, else the one with
    the same label set, e.g. HyperKvasir ``cecum`` -> ``normal-cecum``)."""
    return single_label_class(taxonomy, img.get("source"), img.get("source_class"), class_source)


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


def scaled_inset_box(size: tuple[int, int], shape_hw: tuple[int, int]) -> tuple[float, ...]:
    """The hidden inset region (``hiding_box_xywh_px``: the nominal region plus a margin, set
    by the frame size alone, never by the detected inset) in the coordinates of a resized image."""
    width, height = size
    box = hiding_box_xywh_px(width, height)
    sx, sy = shape_hw[1] / width, shape_hw[0] / height
    x, y, w, h = box
    return (x * sx, y * sy, max(w * sx, 1.0), max(h * sy, 1.0))


def hide_slices(size: tuple[int, int], shape_hw: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of a resized image that ``masked``/``branch`` modes black out
    (``scaled_inset_box``, rounded outwards like ``mask_inset``)."""
    return box_slices(shape_hw, scaled_inset_box(size, shape_hw))


def inset_crop(rgb: np.ndarray, rows: slice, cols: slice, branch_px: int) -> torch.Tensor:
    """The (unmasked) hidden region (``hide_slices``) of a resized image, resized to
    ``(3, branch_px, branch_px)`` uint8."""
    crop = torch.from_numpy(np.array(rgb[rows, cols], dtype=np.uint8, copy=True)).permute(2, 0, 1)
    return TF.resize(crop, [branch_px, branch_px], antialias=True)


def inset_onehot(state: str | None) -> torch.Tensor:
    """(3,) float one-hot over ``INSET_STATES`` (unknown -> ``none``)."""
    onehot = torch.zeros(len(INSET_STATES))
    onehot[INSET_STATES.index(state if state in INSET_STATES else "none")] = 1.0
    return onehot


def inset_inputs(rgb: np.ndarray, size: tuple[int, int], state: str | None,
                 mode: str, branch_px: int) -> dict[str, torch.Tensor]:
    """Model inputs of one resized image before augmentation (``predict``; the reference the
    batched ``ClassifierDataset`` is tested against).

    Args:
        rgb: (S, S, 3) uint8 resized image.
        size: original (width, height) px: it alone sets the hidden region.
        state: inset state (green | black | none), the branch's one-hot input.
        mode: raw | masked | branch.
        branch_px: side of the inset crop (branch mode).

    Returns:
        ``{"image": (3, S, S) uint8}`` plus, in branch mode, ``"inset"`` (3, b, b) uint8 and
        ``"inset_state"`` (3,) float one-hot.
    """
    image = np.array(rgb, dtype=np.uint8, copy=True)
    out: dict[str, torch.Tensor] = {}
    if mode != "raw":
        rows, cols = hide_slices(size, rgb.shape[:2])
        if mode == "branch":
            out["inset"] = inset_crop(rgb, rows, cols, branch_px)  # cropped before masking
            out["inset_state"] = inset_onehot(state)
        image[rows, cols] = 0
    # HWC -> CHW in numpy: torch's copy would start its OpenMP threads, which stall on busy cores.
    return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), **out}


def _batch_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor for one batch. In a DataLoader worker it is allocated in
    shared memory directly (as ``default_collate`` does), so handing it to the main process
    costs no further copy."""
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
    if get_worker_info() is None or new_shared is None:
        return torch.empty(shape, dtype=torch.uint8)
    return torch.empty(0, dtype=torch.uint8).set_(new_shared(math.prod(shape))).view(shape)


class ClassifierDataset(Dataset):
    """One split as model inputs + targets, sliced from the split's pack (``ImageCache.pack``).

    ``ds[[i, j, ...]]`` returns a whole batch: its images read from the pack, then the
    inset region blacked out per image (``masked``/``branch``; the branch's crops and one-hot
    states are precomputed here once). Used with ``batch_size=None`` and a ``BatchSampler``
    (``prepare.batch_loader``). Augmentation is the caller's, on whole batches on the device
    (``augment.BatchAugment``), so it always comes after the masking. ``ds[i]`` gives one item.

    Batch: ``{"image" (B, 3, S, S) uint8 (NCHW view with channels_last strides), ["inset"
    (B, 3, b, b) uint8, "inset_state" (B, 3) float], "labels" (B, L) float, "class" (B,)
    int64, "index" (B,) int64}``.
    """

    def __init__(self, records: Records, pack_path: str | Path, inset_mode: str, branch_px: int):
        self.records, self.pack_path, self.inset_mode = records, Path(pack_path), inset_mode
        self._pack: np.ndarray | None = None
        self._fd: tuple[int, int] | None = None  # (process id, file descriptor) of the pack
        pack = self._images()
        if pack.shape[0] != len(records):
            raise ValueError(f"{self.pack_path} holds {pack.shape[0]} images, the split has {len(records)}")
        self.image_shape: tuple[int, ...] = tuple(pack.shape[1:])
        self._data_offset, self._image_bytes = int(pack.offset), math.prod(self.image_shape)
        shape_hw = pack.shape[1:3]
        self.hide: np.ndarray | None = None
        if inset_mode != "raw":
            rects = [hide_slices(records.sizes[i], shape_hw) for i in range(len(records))]
            self.hide = np.array([(r.start, r.stop, c.start, c.stop) for r, c in rects], dtype=np.int64)
        self.insets: np.ndarray | None = None
        self.inset_states: np.ndarray | None = None
        if inset_mode == "branch":
            assert self.hide is not None  # set above: "branch" is not "raw"
            self.insets = np.stack([inset_crop(pack[i], slice(r0, r1), slice(c0, c1), branch_px).numpy()
                                    for i, (r0, r1, c0, c1) in enumerate(self.hide)])
            self.inset_states = np.stack([inset_onehot(s).numpy() for s in records.inset_states])

    def _images(self) -> np.memmap:
        if self._pack is None:  # set-up only (shape, offset, branch crops); batches use pread
            self._pack = np.load(self.pack_path, mmap_mode="r")
        return self._pack  # type: ignore[return-value]

    def _read_into(self, images: np.ndarray, idx: np.ndarray) -> None:
        """Read pack images ``idx`` into ``images`` (B, S, S, 3), one ``pread`` per image.

        The file is opened once per process (a forked worker opens its own). Plain reads
        instead of a memory map: a worker's RSS stays flat instead of growing by every pack
        page it touches, at the same speed (both served from the page cache).
        """
        if not hasattr(os, "preadv"):  # e.g. Windows: slice the memory map instead
            np.take(self._images(), idx, axis=0, out=images, mode="clip")  # idx checked by _batch
            return
        if self._fd is None or self._fd[0] != os.getpid():
            self._fd = (os.getpid(), os.open(self.pack_path, os.O_RDONLY))
        fd = self._fd[1]
        for image, i in zip(images, idx.tolist()):
            got = os.preadv(fd, [image], self._data_offset + i * self._image_bytes)
            if got != self._image_bytes:
                raise ValueError(f"{self.pack_path}: image {i} is cut short ({got} of {self._image_bytes} bytes); "
                                 "the pack was truncated: delete it and it is rebuilt")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pack": None, "_fd": None}  # workers started by spawn open the file themselves

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None and fd[0] == os.getpid():
            os.close(fd[1])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int | Sequence[int]) -> dict[str, Any]:
        if isinstance(index, (int, np.integer)):
            batch = self._batch(np.array([int(index)]))
            return {k: (int(v[0]) if k == "index" else v[0]) for k, v in batch.items()}
        return self._batch(np.asarray(index, dtype=np.int64))

    def _batch(self, idx: np.ndarray) -> dict[str, Any]:
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images: {idx.min()}..{idx.max()}")
        out = _batch_buffer((len(idx), *self.image_shape))
        images = out.numpy()
        self._read_into(images, idx)
        if self.hide is not None:
            for image, (y0, y1, x0, x1) in zip(images, self.hide[idx]):
                image[y0:y1, x0:x1] = 0
        batch: dict[str, Any] = {"image": out.permute(0, 3, 1, 2)}
        if self.insets is not None and self.inset_states is not None:
            batch["inset"] = torch.from_numpy(self.insets[idx])
            batch["inset_state"] = torch.from_numpy(self.inset_states[idx])
        batch["labels"] = torch.from_numpy(self.records.y_labels[idx])
        batch["class"] = torch.from_numpy(self.records.y_class[idx])
        batch["index"] = torch.from_numpy(idx)
        return batch
