"""Canonical COCO file + split -> an ultralytics YOLO dataset folder.

Layout written under ``out_dir``::

    images/{train,val,test}/<stem>.<ext>   symlinks to the sources (or copies, or masked copies)
    labels/{train,val,test}/<stem>.txt     one "class cx cy w h" line per box, normalised 0-1
    data.yaml                              path, splits and `names` in the taxonomy's box order
    manifest.json                          stem <-> canonical file_name / image id, options

Stems are ``<original stem>-<8 hex of sha1(file_name)>``: two ``1.jpg`` from different
folders never overwrite each other, and the same file always gets the same stem.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml
from PIL import Image

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.images import image_size, load_rgb
from kvasir_ml.geometry import xywh_px_to_cxcywh_norm
from kvasir_ml.io import atomic_write_json, atomic_write_text
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

SPLITS = ("train", "val", "test")
LINK_MODES = ("symlink", "copy")
INSET_MODES = ("raw", "masked", "detected")


class ExportError(ValueError):
    """The dataset cannot be exported; the message names the file and the problem."""


@dataclass
class YoloExport:
    """Where an export went and what it holds."""

    root: Path
    data_yaml: Path
    names: list[str]
    # folder the canonical file_names are relative to (the original frames)
    data_root: Path = Path(".")
    # split -> canonical file_names, in export order
    file_names: dict[str, list[str]] = field(default_factory=dict)
    # canonical file_name -> exported image path
    image_paths: dict[str, Path] = field(default_factory=dict)
    n_boxes: dict[str, int] = field(default_factory=dict)
    # boxes that overlap the blacked-out inset region (masked mode), by file_name
    masked_overlaps: list[str] = field(default_factory=list)


def unique_stem(file_name: str) -> str:
    """Collision-free, deterministic stem for a canonical ``file_name`` (relative path)."""
    digest = hashlib.sha1(file_name.replace(os.sep, "/").encode("utf-8")).hexdigest()[:8]
    return f"{Path(file_name).stem}-{digest}"


def yolo_label_lines(boxes: Sequence[dict], width_px: int, height_px: int, class_ids: dict[int, int]) -> list[str]:
    """``class cx cy w h`` lines for COCO annotations of one image.

    Args:
        boxes: canonical annotations (``bbox`` = x, y, w, h px; ``category_id``).
        width_px, height_px: image size the boxes refer to.
        class_ids: COCO category id -> YOLO class id.
    """
    lines = []
    for ann in boxes:
        cx, cy, w, h = xywh_px_to_cxcywh_norm(ann["bbox"], width_px, height_px)
        lines.append(f"{class_ids[ann['category_id']]} {cx:.7f} {cy:.7f} {w:.7f} {h:.7f}")
    return lines


def _class_ids(ds: CanonicalDataset, taxonomy: Taxonomy) -> dict[int, int]:
    """COCO category id -> YOLO class id, checking the file follows the taxonomy's order."""
    names = taxonomy.box_class_names
    mapping = {}
    for cat in ds.categories:
        if cat["name"] not in names:
            raise ExportError(f"category {cat['name']!r} is not a taxonomy box class ({', '.join(names)})")
        idx = names.index(cat["name"])
        if cat["id"] != idx + 1:
            raise ExportError(f"category {cat['name']!r} has id {cat['id']}, the taxonomy says {idx + 1}")
        mapping[cat["id"]] = idx
    return mapping


def inset_mask_box(entry: dict, rgb, inset_mode: str = "masked") -> tuple[float, float, float, float] | None:
    """The region to black out, or None to leave the frame as it is.

    ``masked``: ``hiding_box_xywh_px`` — the nominal region plus a margin, set by the frame
    size alone, on every frame (the mask itself carries no signal; the models use the same
    region). ``detected``: only a recorded/detected
    inset; frames without one are untouched (the nominal region is large and would hide
    parts of polyps: 21 of 48 sampled Kvasir-SEG frames have a box reaching into it).
    """
    from kvasir_ml.data.inset import HIDE_MARGIN_FRAC, detect_inset, hiding_box_xywh_px

    if inset_mode == "raw":
        return None
    if inset_mode == "masked":
        return hiding_box_xywh_px(rgb.shape[1], rgb.shape[0])
    if entry.get("inset") is not None:  # measured by the indexer
        box = entry.get("inset_box")
    else:
        box = detect_inset(rgb).box_xywh_px
    if box is None:
        return None
    # detected: the panel only, with the same margin as the models' hidden region
    margin = HIDE_MARGIN_FRAC * max(rgb.shape[:2])
    x, y, w, h = (float(v) for v in box)
    return (max(0.0, x - margin), max(0.0, y - margin), w + 2 * margin, h + 2 * margin)


def _write_masked(src: Path, dest: Path, rgb, box) -> Path:
    from kvasir_ml.data.inset import mask_inset

    img = Image.fromarray(mask_inset(rgb, box))
    if dest.suffix.lower() in (".jpg", ".jpeg"):
        img.save(dest, quality=95)
    else:
        dest = dest.with_suffix(".png")
        img.save(dest)
    return dest


def _overlaps(box_a: Sequence[float], box_b: Sequence[float]) -> bool:
    ax, ay, aw, ah = box_a
    bx, by, bw, bh = box_b
    return min(ax + aw, bx + bw) > max(ax, bx) and min(ay + ah, by + bh) > max(ay, by)


def _place_image(src: Path, dest: Path, entry: dict, link_mode: str, inset_mode: str, boxes, report: list) -> Path:
    if inset_mode != "raw":
        rgb = load_rgb(src)
        box = inset_mask_box(entry, rgb, inset_mode)
        if box is not None:
            if any(_overlaps(a["bbox"], box) for a in boxes):
                report.append(entry["file_name"])
            return _write_masked(src, dest, rgb, box)
    if link_mode == "symlink":
        os.symlink(src.resolve(), dest)
    else:
        shutil.copy2(src, dest)
    return dest


def export_yolo(
    ds: CanonicalDataset,
    splits: dict[str, list[str]],
    data_root: str | Path,
    out_dir: str | Path,
    link_mode: str = "symlink",
    inset_mode: str = "raw",
    taxonomy: Taxonomy | None = None,
    required: tuple[str, ...] = ("train", "val"),
) -> YoloExport:
    """Write an ultralytics dataset for a canonical file and a split.

    Args:
        ds: the canonical dataset (boxes in ``xywh_px``).
        splits: ``{"train": [file_name], "val": [...], "test": [...]}``; test may be empty.
        data_root: folder the canonical ``file_name`` paths are relative to.
        out_dir: new or empty folder for the export.
        link_mode: ``symlink`` (default) or ``copy`` for unmasked images.
        inset_mode: ``raw``; ``masked`` (masked copies, inset region blacked out on every image);
            ``detected`` (masked copies only where an inset is recorded or detected).
        taxonomy: box classes and their order; default the project taxonomy.
        required: splits that must not be empty (training needs train and val; scoring a
            checkpoint, ``kvasir-ml eval``, needs only the split it scores).

    Returns:
        YoloExport with the ``data.yaml`` path and per-split file lists.

    Raises:
        ExportError: unknown file names, missing images, size mismatches, empty train/val,
            categories out of taxonomy order, or a non-empty ``out_dir``.
    """
    if link_mode not in LINK_MODES or inset_mode not in INSET_MODES:
        raise ExportError(f"link_mode must be one of {LINK_MODES} and inset_mode one of {INSET_MODES}")
    taxonomy = taxonomy or load_taxonomy()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out}: export folder exists and is not empty; refusing to overwrite")
    for name in required:
        if not splits.get(name):
            raise ExportError(f"split {name!r} is empty; ultralytics needs {' and '.join(required)} images")
    class_ids = _class_ids(ds, taxonomy)
    by_file, by_image = ds.image_by_file, ds.boxes_by_image()
    root = Path(data_root)
    result = YoloExport(root=out, data_yaml=out / "data.yaml", names=taxonomy.box_class_names, data_root=root)
    manifest = []
    for split in SPLITS:
        names = list(splits.get(split, []))
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        result.file_names[split], result.n_boxes[split] = names, 0
        for file_name in names:
            entry = by_file.get(file_name)
            if entry is None:
                raise ExportError(f"split {split!r} lists {file_name!r}, which is not in the canonical file")
            src = root / file_name
            if not src.is_file():
                raise ExportError(f"{src}: image of {file_name!r} does not exist under data root {root}")
            if image_size(src) != (entry["width"], entry["height"]):
                raise ExportError(
                    f"{src}: file is {image_size(src)} px, the canonical file says "
                    f"{(entry['width'], entry['height'])} (boxes would be normalised wrongly)"
                )
            stem = unique_stem(file_name)
            boxes = by_image.get(entry["id"], [])
            dest = _place_image(
                src, out / "images" / split / f"{stem}{src.suffix.lower()}", entry, link_mode, inset_mode,
                boxes, result.masked_overlaps,
            )
            lines = yolo_label_lines(boxes, entry["width"], entry["height"], class_ids)
            atomic_write_text(out / "labels" / split / f"{stem}.txt", "\n".join(lines) + ("\n" if lines else ""))
            result.image_paths[file_name] = dest
            result.n_boxes[split] += len(lines)
            manifest.append({"split": split, "stem": stem, "file_name": file_name, "image_id": entry["id"]})
    data: dict[str, object] = {"path": str(out.resolve()), "train": "images/train", "val": "images/val"}
    if result.file_names["test"]:
        data["test"] = "images/test"
    data["names"] = {i: name for i, name in enumerate(result.names)}
    atomic_write_text(result.data_yaml, yaml.safe_dump(data, sort_keys=False))
    atomic_write_json(out / "manifest.json", {
        "link_mode": link_mode, "inset_mode": inset_mode, "names": result.names,
        "n_boxes": result.n_boxes, "masked_overlaps": result.masked_overlaps, "images": manifest,
    })
    return result
