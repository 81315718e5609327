"""Kvasir-SEG: ``images/``, ``masks/`` and ``kavsir_bboxes.json``.

Boxes come from the JSON (``xmin, ymin, xmax, ymax`` pixels, converted to canonical
``x, y, w, h`` without any rounding, so every box round-trips exactly). When the JSON is
missing, or has no entry for an image, boxes are derived from the mask (see ``masks.py``).
HyperKvasir's ``segmented-images/`` uses the same layout and JSON format and is read with
the same helpers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.sources.common import (
    ImageProbe,
    IndexResult,
    Problem,
    add_probed_image,
    is_hidden,
    is_image_file,
    probe_images,
    relative,
)
from kvasir_ml.geometry import xyxy_px_to_xywh_px
from kvasir_ml.io import read_json
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

SOURCE = "kvasir-seg"
BOXES_JSON = "kavsir_bboxes.json"


def read_box_json(path: Path, root: Path, problems: list[Problem]) -> dict[str, dict[str, Any]]:
    """Read a Kvasir-SEG style box file ``{id: {"height", "width", "bbox": [...]}}``.

    Malformed entries are reported (and left out); the rest is returned keyed by id.
    """
    raw = read_json(path)
    rel = relative(path, root)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by image id, got {type(raw).__name__}")
    entries: dict[str, dict[str, Any]] = {}
    for key, entry in raw.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("bbox"), list)):
            problems.append(Problem(f"{rel}#{key}", "entry has no 'bbox' list; ignored", kind="malformed JSON entry"))
            continue
        entries[key] = entry
    return entries


def _json_boxes(
    entry: dict[str, Any], rel: str, taxonomy: Taxonomy, problems: list[Problem]
) -> list[tuple[int, str, tuple[float, float, float, float]]]:
    """(index in the entry's bbox list, box class, xywh_px) from one JSON entry; malformed boxes are reported."""
    out = []
    for i, box in enumerate(entry["bbox"]):
        where = f"bbox[{i}]"
        try:
            xyxy = [box[k] for k in ("xmin", "ymin", "xmax", "ymax")]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xyxy):
                raise TypeError
            xywh = xyxy_px_to_xywh_px(xyxy)  # OverflowError: an integer beyond float range
        except (KeyError, TypeError, IndexError, OverflowError):
            problems.append(Problem(rel, f"{where} {box!r:.100} is not {{xmin, ymin, xmax, ymax}} numbers; box skipped",
                                    kind="bad box"))
            continue
        label = box.get("label", "polyp")
        if label not in taxonomy.box_class_names:
            problems.append(Problem(rel, f"{where} has unknown box class {label!r}; box skipped", kind="bad box"))
            continue
        out.append((i, label, xywh))
    return out


def add_boxes(
    ds: CanonicalDataset,
    image_id: int,
    boxes: Sequence[tuple[int, str, tuple[float, ...]]],
    rel: str,
    problems: list[Problem],
    origin: str,
) -> None:
    """Add ``(index, class, xywh_px)`` boxes to an image; zero-area / out-of-image boxes are
    reported (by their index in the source) and skipped."""
    for i, label, xywh in boxes:
        try:
            ds.add_box(image_id, label, list(xywh), box_origin=origin)
        except ValueError as exc:
            problems.append(Problem(rel, f"box {i} ({origin}) skipped: {exc}", kind="bad box"))


def attach_boxes(
    ds: CanonicalDataset,
    image_id: int,
    rel: str,
    probe: ImageProbe,
    entry: dict[str, Any] | None,
    json_rel: str | None,
    taxonomy: Taxonomy,
    problems: list[Problem],
) -> None:
    """Boxes for one image: from its JSON entry, else from its mask (reported), else none.

    Every image here is a polyp image, so an entry with ``"bbox": []`` is a gap in the box file,
    not "no polyp": its boxes come from the mask (reported), or it is reported without boxes.
    """
    if entry is not None and not entry["bbox"]:
        how = ("boxes derived from its mask" if probe.mask_boxes_xywh_px
               else "its mask has no foreground either: indexed without boxes" if probe.mask_boxes_xywh_px == []
               else "no usable mask either: indexed without boxes")
        problems.append(Problem(rel, f"{json_rel} lists no box for this polyp image (\"bbox\": []); {how}", "warning",
                                kind="empty bbox list in JSON"))
        if probe.mask_boxes_xywh_px:
            add_boxes(ds, image_id, [(i, "polyp", tuple(b)) for i, b in enumerate(probe.mask_boxes_xywh_px)],
                      rel, problems, "mask")
        return
    if entry is not None:
        size = (entry.get("width"), entry.get("height"))
        if size != (probe.width, probe.height):
            problems.append(
                Problem(
                    rel,
                    f"{json_rel} says {size[0]}x{size[1]}, the file is {probe.width}x{probe.height}; "
                    "boxes checked against the file",
                    "warning",
                    kind="size mismatch",
                )
            )
        add_boxes(ds, image_id, _json_boxes(entry, rel, taxonomy, problems), rel, problems, "json")
        return
    if json_rel is not None:
        how = "boxes derived from its mask" if probe.mask_boxes_xywh_px is not None else "no mask either: no boxes"
        problems.append(Problem(rel, f"image has no entry in {json_rel}; {how}", "warning", kind="image without JSON entry"))
    if probe.mask_boxes_xywh_px is None:
        if json_rel is None:
            problems.append(Problem(rel, "no usable mask: indexed without boxes", "warning", kind="no boxes"))
        return
    if not probe.mask_boxes_xywh_px:
        problems.append(Problem(rel, "mask has no foreground: indexed without boxes", "warning", kind="empty mask"))
    boxes = [(i, "polyp", tuple(b)) for i, b in enumerate(probe.mask_boxes_xywh_px)]
    add_boxes(ds, image_id, boxes, rel, problems, "mask")


def find_mask(mask_dir: Path, stem: str) -> Path | None:
    for suffix in (".jpg", ".png", ".jpeg", ".tif", ".bmp"):
        candidate = mask_dir / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


def list_images(folder: Path, root: Path, problems: list[Problem]) -> list[Path]:
    """Image files of a flat folder, sorted; other files are reported."""
    images = []
    for path in sorted(folder.iterdir()):
        if is_hidden(path):
            continue
        if path.is_file() and is_image_file(path):
            images.append(path)
        else:
            problems.append(Problem(relative(path, root), "not an image file; skipped", kind="not an image"))
    return images


def index_kvasir_seg(
    root: str | Path,
    boxes_json: str | Path | None = BOXES_JSON,
    workers: int | None = None,
    strict: bool = False,
    taxonomy: Taxonomy | None = None,
) -> IndexResult:
    """Index a Kvasir-SEG folder into a canonical dataset.

    Args:
        root: folder with ``images/``, ``masks/`` and (usually) ``kavsir_bboxes.json``.
        boxes_json: box file, relative to ``root`` or absolute; None or a missing file:
            derive every box from ``masks/``.
        workers: decoding processes (None = up to 2).
        strict: raise ``IndexingError`` if anything was skipped or converted.
        taxonomy: defaults to the project taxonomy.

    Returns:
        IndexResult: dataset (source "kvasir-seg", class "polyps") and problems.
    """
    start = time.perf_counter()
    root = Path(root)
    taxonomy = taxonomy or load_taxonomy()
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{root}: no images/ folder (expected Kvasir-SEG layout images/, masks/, {BOXES_JSON})")
    problems: list[Problem] = []
    json_path = (root / boxes_json) if boxes_json is not None else None
    entries: dict[str, dict[str, Any]] | None = None
    if json_path is not None and json_path.exists():
        entries = read_box_json(json_path, root, problems)
    json_rel = relative(json_path, root) if json_path is not None and entries is not None else None
    images = list_images(image_dir, root, problems)
    # Masks are decoded only where boxes must come from them (no entry, or an empty box list).
    masks = [
        find_mask(mask_dir, p.stem) if (entries is None or not entries.get(p.stem, {}).get("bbox"))
        and mask_dir.is_dir() else None
        for p in images
    ]
    probes = probe_images(images, masks, workers=workers)
    ds = CanonicalDataset.new(SOURCE, taxonomy=taxonomy)
    ds.info["boxes_from"] = json_rel or "masks"
    labels = taxonomy.labels_for(SOURCE, "polyps")
    for path, probe in zip(images, probes):
        rel = relative(path, root)
        image_id = add_probed_image(ds, problems, rel, probe, labels, SOURCE, "polyps")
        if image_id is None:
            continue
        entry = entries.get(path.stem) if entries is not None else None
        attach_boxes(ds, image_id, rel, probe, entry, json_rel, taxonomy, problems)
    if entries is not None:
        stems = {p.stem for p in images}
        for key in sorted(set(entries) - stems):
            problems.append(Problem(f"{json_rel}#{key}", f"JSON entry has no image images/{key}.*; skipped", kind="JSON entry without image"))
    return IndexResult.finish(ds, problems, start, strict, SOURCE, root)
