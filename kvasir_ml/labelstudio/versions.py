"""Versions of a canonical file written by a pull: what changed, and the next free name.

A pull never touches its base file: it writes ``X.vN.coco.json`` (the next free N) with a
``.report.json`` beside it, and ``diff_canonical`` says what the annotators changed.
"""

from __future__ import annotations

import glob
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.io import atomic_write_json, read_json, sha256_file, sha256_json

if TYPE_CHECKING:
    from kvasir_ml.labelstudio.from_export import ConvertReport

_SAME_BOX_PX = 0.01  # boxes closer than this (each coordinate) count as unchanged in diffs


# ---- summary of changes ---------------------------------------------------------------
def diff_canonical(old: CanonicalDataset | None, new: CanonicalDataset, max_listed: int = 50) -> dict[str, Any]:
    """Images, labels, boxes and inset states added/removed between two canonical files."""
    def index(ds):
        if ds is None:
            return {}
        names = {c["id"]: c["name"] for c in ds.categories}
        boxes = ds.boxes_by_image()
        return {img["file_name"]: (img, [(names[b["category_id"]], b["bbox"]) for b in boxes.get(img["id"], [])]) for img in ds.images}

    a, b = index(old), index(new)
    totals = dict.fromkeys(("images_added", "images_removed", "images_changed", "labels_added", "labels_removed",
                            "boxes_added", "boxes_removed", "inset_changed"), 0)
    totals["images_added"], totals["images_removed"] = len(b.keys() - a.keys()), len(a.keys() - b.keys())
    changed: list[dict[str, Any]] = []
    for key in sorted(a.keys() | b.keys()):
        (img_a, boxes_a), (img_b, boxes_b) = a.get(key, ({}, [])), b.get(key, ({}, []))
        la, lb = set(img_a.get("labels", [])), set(img_b.get("labels", []))
        rest = list(boxes_a)
        added = 0
        for cls, box in boxes_b:
            hit = next((o for o in rest if o[0] == cls and all(abs(p - q) <= _SAME_BOX_PX for p, q in zip(o[1], box))), None)
            if hit is None:
                added += 1
            else:
                rest.remove(hit)
        inset = key in a and key in b and img_a.get("inset") != img_b.get("inset")
        delta = {"labels_added": len(lb - la), "labels_removed": len(la - lb), "boxes_added": added,
                 "boxes_removed": len(rest), "inset_changed": int(inset)}
        for k, v in delta.items():
            totals[k] += v
        if any(delta.values()) and key in a and key in b:
            totals["images_changed"] += 1
            if len(changed) < max_listed:
                changed.append({"file_name": key, "labels_added": sorted(lb - la), "labels_removed": sorted(la - lb),
                                "boxes_added": added, "boxes_removed": len(rest),
                                **({"inset": [img_a.get("inset"), img_b.get("inset")]} if inset else {})})
    return {**totals, "changed": changed}


# ---- versioned output -------------------------------------------------------------------
_VERSION_RE = re.compile(r"^(?P<stem>.+?)(?:\.v(?P<n>\d+))?\.coco\.json$")


def next_version_path(path: str | Path) -> Path:
    """The next free version beside ``path``: ``X.coco.json`` -> ``X.v2.coco.json`` -> ``X.v3...``.

    Never returns an existing file, so the previous version is never overwritten.
    """
    path = Path(path)
    m = _VERSION_RE.match(path.name)
    stem = m.group("stem") if m else path.name.removesuffix(".json")
    highest = 1
    for other in path.parent.glob(f"{glob.escape(stem)}.v*.coco.json"):
        mo = _VERSION_RE.match(other.name)
        if mo and mo.group("stem") == stem and mo.group("n"):
            highest = max(highest, int(mo.group("n")))
    return path.with_name(f"{stem}.v{highest + 1}.coco.json")


def _report_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name.removesuffix(".json") + ".report.json")


def pull_fingerprint(base_path: str | Path | None, dataset: CanonicalDataset) -> dict[str, str | None]:
    """What identifies a pull's result: the base file's bytes and the new version's content
    (images, boxes, categories; not the timestamps in ``info``)."""
    base = Path(base_path) if base_path is not None else None
    return {"base_sha256": sha256_file(base) if base is not None and base.is_file() else None,
            "content_sha256": sha256_json({"images": dataset.images, "annotations": dataset.annotations,
                                           "categories": dataset.categories})}


def find_same_version(out_path: str | Path, fingerprint: dict[str, Any]) -> Path | None:
    """An existing version beside ``out_path`` (same stem) written by a pull with this fingerprint
    (read from its ``.report.json``), so pulling twice from one base writes one version."""
    out_path = Path(out_path)
    m = _VERSION_RE.match(out_path.name)
    stem = m.group("stem") if m else out_path.name.removesuffix(".json")
    candidates = {out_path, *out_path.parent.glob(f"{glob.escape(stem)}.v*.coco.json")}
    for path in sorted(candidates, key=lambda p: p.name, reverse=True):
        report = _report_path(path)
        if not (path.is_file() and report.is_file()):
            continue
        try:
            if read_json(report).get("fingerprint") == fingerprint:
                return path
        except (ValueError, AttributeError):  # unreadable or foreign report: not the same pull
            continue
    return None


def write_version(dataset: CanonicalDataset, report: ConvertReport, out_path: str | Path,
                  fingerprint: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write the canonical file and ``<name>.report.json`` beside it (atomic; backups kept).

    Args:
        fingerprint: ``pull_fingerprint`` of this pull, kept in the report (``find_same_version``).

    Returns:
        ``(canonical path, report path)``.
    """
    out_path = Path(out_path)
    dataset.info["labelstudio"]["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    dataset.save(out_path, keep_backup=True)
    report_path = _report_path(out_path)
    atomic_write_json(report_path, {**report.to_dict(), **({"fingerprint": fingerprint} if fingerprint else {})},
                      keep_backup=True)
    return out_path, report_path
