"""Which ground truth the test split is scored on: folder labels or verified labels.

``folder`` (default): every test image, with its folder labels (for Kvasir v2 / HyperKvasir,
its class folder's label set; on a verified version, the labels a verified image had before).
``verified``: only the test images a verification pull marked ``verified`` (``kvasir-ml
verify pull``), with their verified labels; their single-label target is the class whose
label set equals the verified labels (none: the image has no single-label target and
single-label metrics skip it, as for any image without a class).

Train and val always see folder labels (``folder_view``) and the label vocabulary is the
folder one, so a run differs between the two modes only in what test is scored against
(a label only the annotators saw, e.g. bowel prep on a Kvasir v2 frame, is not scored: no
model was trained on it).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.taxonomy import Taxonomy

GroundTruth = Literal["folder", "verified"]


def select_test_images(ds: CanonicalDataset, file_names: Sequence[str], ground_truth: GroundTruth,
                       origin: str) -> tuple[list[str], dict[str, Any]]:
    """The test images to score and the record of it for metrics.json.

    Returns:
        ``(file names, {"kind", "n_test_images", "n_test_left_out", "verification"})``.

    Raises:
        ValueError: ``verified`` but no test image is verified (the message names the file).
    """
    files = list(file_names)
    if ground_truth == "folder":
        return files, {"kind": "folder", "n_test_images": len(files), "n_test_left_out": 0}
    by_file = ds.image_by_file
    kept = [f for f in files if f in by_file and by_file[f].get("verified")]
    if not kept:
        raise ValueError(f"{origin}: eval.ground_truth=verified, but none of the {len(files)} test images is "
                         "verified; train on the version `kvasir-ml verify pull` writes (with the same split file)")
    info = ds.info.get("verification") or {}
    return kept, {"kind": "verified", "n_test_images": len(kept), "n_test_left_out": len(files) - len(kept),
                  "verification": {k: info.get(k) for k in ("project_id", "pulled_at", "base_sha256") if k in info}}


def verified_class_indices(ds: CanonicalDataset, file_names: Sequence[str], class_source: str,
                           taxonomy: Taxonomy) -> np.ndarray:
    """Single-label targets from verified labels: the index of the one class of ``class_source``
    whose label set equals the image's labels, else -1."""
    classes = taxonomy.source(class_source).classes
    sets = [frozenset(taxonomy.labels_for(class_source, c)) for c in classes]
    by_file = ds.image_by_file
    out = []
    for name in file_names:
        matches = [i for i, s in enumerate(sets) if s == frozenset(by_file[name]["labels"])]
        out.append(matches[0] if len(matches) == 1 else -1)
    return np.array(out, dtype=np.int64)


def folder_view(ds: CanonicalDataset) -> CanonicalDataset:
    """``ds`` with every verified image put back to what it had before verification
    (``verified.previous_labels`` and ``previous_boxes``): training, validation and folder-mode
    scoring then see the same labels and boxes as on the base file, so the switch changes only
    what test is scored against. The dataset itself when nothing is verified."""
    verified = {img["id"]: img["verified"] for img in ds.images if img.get("verified")}
    if not verified:
        return ds
    images = [{**img, "labels": list(verified[img["id"]].get("previous_labels", img["labels"]))}
              if img["id"] in verified else img for img in ds.images]
    out = CanonicalDataset(info=ds.info, categories=ds.categories, images=images,
                           annotations=sorted((a for a in ds.annotations if a["image_id"] not in verified),
                                              key=lambda a: a["id"]))
    for image_id, record in verified.items():
        previous = record.get("previous_boxes")
        for box in previous if isinstance(previous, list) else []:
            out.add_box(image_id, box["category"], box["bbox"])
    return out
