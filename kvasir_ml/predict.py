"""Combined prediction: classifier labels, detector boxes and the inset state per image.

Output, one entry per image (the interface ``kvasir-ml predict`` writes)::

    {"image": "path/a.jpg", "width": 622, "height": 529,
     "inset": {"state": "green", "box_xywh_px": [...] | null},
     "labels": {"polyp": 0.93, ...},                 # every label's score (classifier)
     "predicted_labels": ["polyp"],                   # scores >= tuned per-class thresholds
     "source_class": {"name": "polyps", "score": 0.8} | null,
     "boxes": [{"class": "polyp", "score": 0.71, "xywh_px": [x, y, w, h]}]}

Images that cannot be read get ``{"image": ..., "error": "..."}`` and do not stop the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from kvasir_ml.data.images import ImageError, load_rgb
from kvasir_ml.data.inset import detect_inset


def predict_images(
    image_paths: Sequence[str | Path],
    classifier_ckpt: str | Path | None = None,
    detector_ckpt: str | Path | None = None,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Run the classifier and/or the detector on images and merge their outputs."""
    paths = [Path(p) for p in image_paths]
    results: list[dict[str, Any]] = []
    readable: list[Path] = []
    insets = []  # measured once here, handed to both models (no second decode/detection)
    for path in paths:
        try:
            rgb = load_rgb(path)
        except ImageError as exc:
            results.append({"image": str(path), "error": exc.reason})
            continue
        inset = detect_inset(rgb)
        results.append({
            "image": str(path),
            "width": int(rgb.shape[1]),
            "height": int(rgb.shape[0]),
            "inset": {"state": inset.state, "box_xywh_px": list(inset.box_xywh_px) if inset.box_xywh_px else None},
            "labels": {},
            "predicted_labels": [],
            "source_class": None,
            "boxes": [],
        })
        readable.append(path)
        insets.append(inset)
    ok = [r for r in results if "error" not in r]
    if classifier_ckpt:
        from kvasir_ml.train.predict import classify_images

        for entry, out in zip(ok, classify_images(classifier_ckpt, readable, device=device, insets=insets)):
            entry.update(out)
    if detector_ckpt:
        from kvasir_ml.detection.predict import detect_images

        for entry, boxes in zip(ok, detect_images(detector_ckpt, readable, device=device, insets=insets)):
            entry["boxes"] = boxes
    return results
