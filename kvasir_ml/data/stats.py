"""Summary statistics of a canonical dataset (what ``kvasir-ml data stats`` prints)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from kvasir_ml.data.coco import CanonicalDataset


def _distribution(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    arr = np.asarray(values)
    return {"min": int(arr.min()), "median": float(np.median(arr)), "max": int(arr.max())}


def dataset_stats(ds: CanonicalDataset, top_sizes: int = 5) -> dict[str, Any]:
    """Counts and distributions of one canonical dataset.

    Args:
        ds: the dataset.
        top_sizes: how many of the most common ``WxH`` sizes to list.

    Returns:
        Dict with ``n_images``, ``n_boxes``, ``labels`` {label: images}, ``source_classes``
        {"source/class": images}, ``boxes`` {class: {"boxes", "images"}},
        ``boxes_per_image`` {n: images}, ``width_px``/``height_px`` {min, median, max},
        ``n_distinct_sizes``, ``top_sizes`` [[WxH, images]], ``inset`` {state: images}
        (``"unmeasured"`` for null). Dict keys are sorted so the output is stable.
    """
    images = ds.images
    labels = Counter(name for img in images for name in img.get("labels", []))
    classes = Counter(f"{img.get('source')}/{img.get('source_class')}" for img in images)
    insets = Counter(img.get("inset") or "unmeasured" for img in images)
    sizes = Counter(f"{img['width']}x{img['height']}" for img in images)
    box_count: Counter[str] = Counter()
    box_images: dict[str, set[int]] = {}
    per_image = Counter(ann["image_id"] for ann in ds.annotations)
    for ann in ds.annotations:
        name = ds.category_name(ann["category_id"])
        box_count[name] += 1
        box_images.setdefault(name, set()).add(ann["image_id"])
    boxes_per_image = Counter(per_image.get(img["id"], 0) for img in images)
    return {
        "n_images": len(images),
        "n_boxes": len(ds.annotations),
        "labels": dict(sorted(labels.items())),
        "source_classes": dict(sorted(classes.items())),
        "boxes": {
            name: {"boxes": box_count[name], "images": len(box_images[name])} for name in sorted(box_count)
        },
        "boxes_per_image": {str(k): v for k, v in sorted(boxes_per_image.items())},
        "width_px": _distribution([img["width"] for img in images]),
        "height_px": _distribution([img["height"] for img in images]),
        "n_distinct_sizes": len(sizes),
        "top_sizes": [[size, n] for size, n in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:top_sizes]],
        "inset": dict(sorted(insets.items())),
    }


def _table(title: str, rows: list[tuple[str, Any]]) -> list[str]:
    if not rows:
        return [f"{title}: none"]
    width = max(len(str(k)) for k, _ in rows)
    return [f"{title}:"] + [f"  {str(k):<{width}}  {v}" for k, v in rows]


def format_stats(stats: dict[str, Any]) -> str:
    """Plain-text tables of ``dataset_stats`` output."""
    n = max(1, stats["n_images"])
    lines = [f"{stats['n_images']} images, {stats['n_boxes']} boxes"]
    lines += _table("labels (images)", [(k, f"{v:6d}  {100 * v / n:5.1f}%") for k, v in stats["labels"].items()])
    lines += _table("source classes (images)", [(k, f"{v:6d}") for k, v in stats["source_classes"].items()])
    lines += _table("boxes", [(k, f"{v['boxes']:6d} boxes on {v['images']} images") for k, v in stats["boxes"].items()])
    lines += _table("boxes per image", [(k, f"{v:6d} images") for k, v in stats["boxes_per_image"].items()])
    w, h = stats["width_px"], stats["height_px"]
    lines.append(f"width px  min/median/max: {w['min']} / {w['median']:g} / {w['max']}")
    lines.append(f"height px min/median/max: {h['min']} / {h['median']:g} / {h['max']}")
    lines += _table(f"sizes ({stats['n_distinct_sizes']} distinct), most common", [(s, f"{c:6d}") for s, c in stats["top_sizes"]])
    lines += _table("inset", [(k, f"{v:6d}  {100 * v / n:5.1f}%") for k, v in stats["inset"].items()])
    return "\n".join(lines)
