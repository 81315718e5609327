"""The canonical annotation file: COCO JSON plus image-level fields.

Every dataset has one canonical file from which all other formats (YOLO, Label Studio,
splits, training tables) are derived. It is plain COCO, so pycocotools loads it
unchanged, with extra keys on each image entry::

    {"id": 1, "file_name": "images/a.jpg",     # relative to a data root given separately
     "width": 622, "height": 529,
     "labels": ["polyp"],                        # image-level labels (taxonomy names)
     "source": "kvasir-seg", "source_class": "polyps",
     "inset": "black",                           # green | black | none | null (not measured)
     "inset_box": [x, y, w, h] | null,           # pixels
     "content_sha256": "..."}                    # groups duplicates across datasets

Annotations: ``{"id", "image_id", "category_id", "bbox": [x, y, w, h] px, "area", "iscrowd": 0}``
with categories = the taxonomy's box classes (``id = index + 1``). The schema, checked on
every load and save, is ``canonical_schema.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


from kvasir_ml.data.canonical_schema import CanonicalError, validate_canonical
from kvasir_ml.data.inset import INSET_STATES
from kvasir_ml.geometry import validate_xywh_px
from kvasir_ml.io import atomic_write_json, read_json
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

CANONICAL_FORMAT_VERSION = 1


@dataclass
class CanonicalDataset:
    """In-memory canonical file with fast lookups. ``to_dict`` gives the COCO JSON."""

    info: dict[str, Any]
    categories: list[dict[str, Any]]
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def new(cls, source: str, description: str = "", taxonomy: Taxonomy | None = None) -> "CanonicalDataset":
        taxonomy = taxonomy or load_taxonomy()
        categories = [
            {"id": i + 1, "name": box.name, "supercategory": box.label}
            for i, box in enumerate(taxonomy.box_classes)
        ]
        info = {
            "description": description or f"kvasir_ml canonical annotations ({source})",
            "source": source,
            "format_version": CANONICAL_FORMAT_VERSION,
            "taxonomy_version": taxonomy.version,
            "date_created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return cls(info=info, categories=categories)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "<dict>") -> "CanonicalDataset":
        validate_canonical(raw, origin)
        return cls(
            info=dict(raw.get("info", {})),
            categories=list(raw["categories"]),
            images=list(raw["images"]),
            annotations=list(raw["annotations"]),
        )

    def add_image(
        self,
        file_name: str,
        width: int,
        height: int,
        labels: Iterable[str],
        source: str,
        source_class: str | None,
        inset: str | None = None,
        inset_box: list[float] | None = None,
        content_sha256: str | None = None,
        **extra: Any,
    ) -> int:
        """Append an image entry and return its id."""
        if inset is not None and inset not in INSET_STATES:
            raise CanonicalError(f"{file_name}: inset state {inset!r} not in {INSET_STATES}")
        image_id = (self.images[-1]["id"] + 1) if self.images else 1
        entry = {
            "id": image_id,
            "file_name": file_name,
            "width": int(width),
            "height": int(height),
            "labels": list(labels),
            "source": source,
            "source_class": source_class,
            "inset": inset,
            "inset_box": [float(v) for v in inset_box] if inset_box is not None else None,
            "content_sha256": content_sha256,
        }
        entry.update(extra)
        self.images.append(entry)
        return image_id

    def add_box(self, image_id: int, category: str, bbox_xywh_px: list[float], **extra: Any) -> int:
        """Append a box (validated against the image size) and return its annotation id.

        Raises:
            geometry.BoxError: zero-area or out-of-image box (message names the image).
        """
        # images are numbered 1, 2, ... as added: a direct look first (a dict of every image per box
        # made building a 100k-image file quadratic), the full lookup otherwise
        fast = self.images[image_id - 1] if 0 < image_id <= len(self.images) else None
        image = fast if fast is not None and fast["id"] == image_id else self.image_by_id[image_id]
        cat_id = self.category_id(category)
        try:
            x, y, w, h = validate_xywh_px(bbox_xywh_px, image["width"], image["height"])
        except ValueError as exc:
            raise type(exc)(f"{image['file_name']}: {exc}") from None
        ann_id = (self.annotations[-1]["id"] + 1) if self.annotations else 1
        ann = {
            "id": ann_id,
            "image_id": image_id,
            "category_id": cat_id,
            "bbox": [x, y, w, h],
            "area": w * h,
            "iscrowd": 0,
        }
        ann.update(extra)
        self.annotations.append(ann)
        return ann_id

    # ---- lookups ------------------------------------------------------------------
    @property
    def image_by_id(self) -> dict[int, dict[str, Any]]:
        return {img["id"]: img for img in self.images}

    @property
    def image_by_file(self) -> dict[str, dict[str, Any]]:
        return {img["file_name"]: img for img in self.images}

    def boxes_by_image(self) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in self.images}
        for ann in self.annotations:
            out.setdefault(ann["image_id"], []).append(ann)
        return out

    def category_id(self, name: str) -> int:
        for cat in self.categories:
            if cat["name"] == name:
                return cat["id"]
        raise CanonicalError(f"unknown box class {name!r}; known: {[c['name'] for c in self.categories]}")

    def category_name(self, category_id: int) -> str:
        for cat in self.categories:
            if cat["id"] == category_id:
                return cat["name"]
        raise CanonicalError(f"unknown category id {category_id}")

    def subset(self, file_names: Iterable[str]) -> "CanonicalDataset":
        """A new dataset with only these images (ids kept) and their boxes."""
        keep = set(file_names)
        images = [img for img in self.images if img["file_name"] in keep]
        ids = {img["id"] for img in images}
        anns = [a for a in self.annotations if a["image_id"] in ids]
        return CanonicalDataset(info=dict(self.info), categories=list(self.categories), images=images, annotations=anns)

    # ---- persistence --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info,
            "licenses": [],
            "categories": self.categories,
            "images": self.images,
            "annotations": self.annotations,
        }

    def save(self, path: str | Path, keep_backup: bool = True) -> Path | None:
        """Write atomically; an existing file is kept as a timestamped backup."""
        validate_canonical(self.to_dict(), str(path))
        return atomic_write_json(path, self.to_dict(), keep_backup=keep_backup)


def merge_canonical(parts: list[tuple[str, CanonicalDataset]], description: str = "") -> CanonicalDataset:
    """Combine canonical files under one data root.

    Args:
        parts: ``(prefix, dataset)`` pairs; each dataset's ``file_name`` values become
            ``<prefix>/<file_name>``, so the merged file's data root is the folder that holds
            every prefix (e.g. ``prefix="kvasir-seg"`` for ``<root>/kvasir-seg/images/...``).
        description: ``info.description`` of the result.

    Returns:
        A new dataset with fresh image and annotation ids; every image keeps its ``source``,
        so duplicates across datasets can be grouped by ``content_sha256`` when splitting.

    Raises:
        CanonicalError: two parts disagree on the box classes, or file names collide.
    """
    if not parts:
        raise CanonicalError("merge_canonical: nothing to merge")
    categories = parts[0][1].categories
    merged = CanonicalDataset(info={}, categories=list(categories))
    sources = []
    for prefix, ds in parts:
        if [c["name"] for c in ds.categories] != [c["name"] for c in categories]:
            raise CanonicalError(f"merge_canonical: part {prefix!r} has other box classes than the first part")
        sources.append(ds.info.get("source", prefix))
        old_to_new: dict[int, int] = {}
        for img in ds.images:
            entry = dict(img)
            entry["file_name"] = f"{prefix.rstrip('/')}/{img['file_name']}" if prefix else img["file_name"]
            entry["id"] = (merged.images[-1]["id"] + 1) if merged.images else 1
            old_to_new[img["id"]] = entry["id"]
            merged.images.append(entry)
        for ann in ds.annotations:
            entry = dict(ann)
            entry["id"] = (merged.annotations[-1]["id"] + 1) if merged.annotations else 1
            entry["image_id"] = old_to_new[ann["image_id"]]
            merged.annotations.append(entry)
    merged.info = dict(parts[0][1].info)
    merged.info.pop("image_root", None)  # the parts' roots: the merge's root is their common folder
    merged.info.update(source="+".join(sources), description=description or f"merged: {', '.join(sources)}")
    validate_canonical(merged.to_dict(), "merged dataset")  # catches file_name collisions
    return merged


def load_canonical(path: str | Path) -> CanonicalDataset:
    """Load and validate a canonical file (``canonical_schema.validate_canonical``).

    Raises:
        CanonicalError: any entry breaks the schema; every problem is named (entry, id, field).
        ValueError: malformed JSON or not UTF-8, naming the file.
    """
    return CanonicalDataset.from_dict(read_json(path), origin=str(path))
