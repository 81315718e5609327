"""Known label noise for measuring label-error discovery: confusable class swaps and box edits.

``inject_label_swaps`` relabels a fraction of frames as the confusable partner of their
source class (the hard pairs the comparison reports: esophagitis <-> normal-z-line,
dyed-lifted-polyps <-> dyed-resection-margins); ``inject_box_noise`` shifts, drops or adds a
fraction of boxes. Both return a new dataset (the input is not modified) and the list of
what they changed, which ``bench`` scores the suspects against.
"""

from __future__ import annotations

import copy
import random
from typing import Any, Sequence

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.geometry import clip_xywh_px
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

BOX_NOISE = ("shift", "drop", "add")


def _copy(ds: CanonicalDataset) -> CanonicalDataset:
    return CanonicalDataset(info=dict(ds.info), categories=list(ds.categories), images=copy.deepcopy(ds.images),
                            annotations=copy.deepcopy(ds.annotations))


def inject_label_swaps(ds: CanonicalDataset, fraction: float, seed: int, pairs: Sequence[tuple[str, str]],
                       taxonomy: Taxonomy | None = None) -> tuple[CanonicalDataset, list[dict[str, Any]]]:
    """Swap ``fraction`` of all frames to their confusable partner class (labels and source_class).

    Only frames of a class in ``pairs`` can be swapped; the class's own labels are replaced by
    the partner's, extra findings on the frame stay. Boxes are left as they are.

    Returns:
        ``(noisy dataset, [{"file_name", "from", "to", "given", "true"}])``.
    """
    taxonomy = taxonomy or load_taxonomy()
    partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    out = _copy(ds)
    eligible = sorted((img for img in out.images if img.get("source_class") in partner), key=lambda i: i["file_name"])
    n = min(len(eligible), round(fraction * len(out.images)))
    injected = []
    for img in random.Random(seed).sample(eligible, n):
        src, old = img["source"], img["source_class"]
        new = partner[old]
        own, theirs = set(taxonomy.labels_for(src, old)), taxonomy.labels_for(src, new)
        labels = sorted(set(theirs) | (set(img["labels"]) - own), key=taxonomy.label_names.index)
        injected.append({"file_name": img["file_name"], "from": old, "to": new, "true": list(img["labels"]),
                         "given": labels})
        img["labels"], img["source_class"] = labels, new
    return out, sorted(injected, key=lambda r: r["file_name"])


def _shifted(box: Sequence[float], w: int, h: int, rng: random.Random) -> list[float]:
    """The box moved by 0.5-0.8 of its size along a random diagonal (IoU with itself < 0.35), clipped."""
    x, y, bw, bh = box
    for _ in range(20):
        dx, dy = rng.choice((-1, 1)) * rng.uniform(0.5, 0.8) * bw, rng.choice((-1, 1)) * rng.uniform(0.5, 0.8) * bh
        moved = clip_xywh_px([x + dx, y + dy, bw, bh], w, h)
        if moved[2] >= 2 and moved[3] >= 2 and (moved[0], moved[1]) != (x, y):
            return [float(v) for v in moved]
    return [float(v) for v in box]


def _added(img: dict[str, Any], sizes: list[tuple[float, float]], rng: random.Random) -> list[float]:
    """A box of a typical size at a random place of the frame."""
    bw, bh = rng.choice(sizes) if sizes else (img["width"] / 4, img["height"] / 4)
    bw, bh = min(bw, img["width"] * 0.5), min(bh, img["height"] * 0.5)
    x, y = rng.uniform(0, img["width"] - bw), rng.uniform(0, img["height"] - bh)
    return [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)]


def inject_box_noise(ds: CanonicalDataset, fraction: float, seed: int, exclude: Sequence[str] = ()
                     ) -> tuple[CanonicalDataset, list[dict[str, Any]]]:
    """Shift, drop or add (in turn) boxes, ``fraction`` of the box count in all.

    Shifted and dropped boxes are drawn from the existing boxes; added ones go onto random
    frames (with or without boxes) with the class and size of a random existing box.
    Frames in ``exclude`` (e.g. label-swapped ones) are not touched.

    Returns:
        ``(noisy dataset, [{"file_name", "noise": shift|drop|add, "class", "box", "true_box"}])``
        with ``box`` the box as given now (None when dropped) and ``true_box`` the original
        (None when added).
    """
    rng = random.Random(seed)
    out = _copy(ds)
    skip = set(exclude)
    by_id = out.image_by_id
    candidates = [a for a in out.annotations if by_id[a["image_id"]]["file_name"] not in skip]
    n = round(fraction * len(out.annotations))
    sizes = [(a["bbox"][2], a["bbox"][3]) for a in out.annotations]
    frames = sorted((img for img in out.images if img["file_name"] not in skip), key=lambda i: i["file_name"])
    chosen = rng.sample(candidates, min(n, len(candidates)))
    injected, dropped_ids = [], set()
    for i in range(n):
        noise = BOX_NOISE[i % len(BOX_NOISE)]
        if noise in ("shift", "drop") and i < len(chosen):
            ann = chosen[i]
            img, cls = by_id[ann["image_id"]], out.category_name(ann["category_id"])
            record = {"file_name": img["file_name"], "noise": noise, "class": cls, "true_box": list(ann["bbox"])}
            if noise == "shift":
                ann["bbox"] = _shifted(ann["bbox"], img["width"], img["height"], rng)
                ann["area"] = ann["bbox"][2] * ann["bbox"][3]
                record["box"] = list(ann["bbox"])
            else:
                dropped_ids.add(ann["id"])
                record["box"] = None
        else:
            img = rng.choice(frames)
            cls = out.category_name(rng.choice(out.annotations)["category_id"]) if out.annotations else \
                out.categories[0]["name"]
            box = _added(img, sizes, rng)
            out.add_box(img["id"], cls, box, box_origin="injected-noise")
            record = {"file_name": img["file_name"], "noise": "add", "class": cls, "box": box, "true_box": None}
        injected.append(record)
    out.annotations = [a for a in out.annotations if a["id"] not in dropped_ids]
    return out, injected
