"""Detector inference: boxes per image, and COCO results JSON for pycocotools.

Checkpoints are ultralytics ``.pt`` files with a ``kvasir_ml`` entry added by
``kvasir_ml.detection.run`` (class names, inset mode, image size, prediction threshold),
so the model carries its own preprocessing: a detector trained on masked frames masks
the inset region of every frame it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kvasir_ml.data.images import load_rgb
from kvasir_ml.data.inset import mask_inset
from kvasir_ml.detection.yolo_dataset import inset_mask_box
from kvasir_ml.detection.yolo import ultralytics_device
from kvasir_ml.geometry import xyxy_px_to_xywh_px
from kvasir_ml.io import atomic_write_json

Detection = dict[str, Any]  # {"class": name, "score": float, "xywh_px": [x, y, w, h]}


def checkpoint_meta(model) -> dict[str, Any]:
    """The ``kvasir_ml`` entry of a loaded checkpoint, with fallbacks for plain ultralytics files."""
    ckpt = getattr(model, "ckpt", None) or {}
    meta = dict(ckpt.get("kvasir_ml", {}))
    meta.setdefault("box_class_names", [model.names[i] for i in sorted(model.names)])
    meta.setdefault("inset_mode", "raw")
    meta.setdefault("imgsz", int((ckpt.get("train_args") or {}).get("imgsz", 640)))
    meta.setdefault("predict_conf", 0.25)
    return meta


def _frames(rgbs: Sequence[np.ndarray], inset_mode: str, insets: Sequence[Any] | None = None) -> list[np.ndarray]:
    """BGR arrays (ultralytics' convention for numpy input), masked when the model was.

    ``insets``: ``InsetResult`` per frame when the caller already measured them (else detected here).
    """
    frames = []
    for i, rgb in enumerate(rgbs):
        entry = {"inset": insets[i].state, "inset_box": insets[i].box_xywh_px} if insets is not None else {}
        box = inset_mask_box(entry, rgb, inset_mode)
        if box is not None:
            rgb = mask_inset(rgb, box)
        frames.append(np.ascontiguousarray(rgb[:, :, ::-1]))
    return frames


def run_detector(model, paths: Sequence[str | Path], batch: int = 16, **options: Any) -> list[list[Detection]]:
    """Boxes for each image file with an already loaded ``YOLO`` model (``load_yolo``), decoded
    ``batch`` at a time; ``options`` (device, conf, iou, max_det) as for ``detect_arrays``.

    Raises:
        ImageError: an image cannot be read.
    """
    out: list[list[Detection]] = []
    for start in range(0, len(paths), batch):
        rgbs = [load_rgb(p) for p in paths[start:start + batch]]
        out += detect_arrays(model, rgbs, batch=batch, **options)
    return out


def detect_arrays(
    model,
    rgbs: Sequence[np.ndarray],
    device: str = "auto",
    conf: float | None = None,
    iou: float = 0.7,
    max_det: int = 100,
    batch: int = 16,
    insets: Sequence[Any] | None = None,
) -> list[list[Detection]]:
    """Boxes for decoded frames (HxWx3 uint8 RGB) with a model from ``load_yolo``.

    Args:
        device: ``auto`` | ``cpu`` | ``cuda[:N]``.
        conf: confidence threshold; None = the one stored in the checkpoint.
        iou, max_det: NMS IoU threshold and boxes kept per frame.
        insets: ``InsetResult`` per frame if already measured (``predict_images``); None =
            detected here when the model masks the inset.

    Returns:
        Per frame, ``{"class", "score", "xywh_px"}`` sorted by score, in the frame's pixels.
    """
    meta = checkpoint_meta(model)
    names = meta["box_class_names"]
    conf = meta["predict_conf"] if conf is None else conf
    dev = ultralytics_device(device)
    out: list[list[Detection]] = []
    for start in range(0, len(rgbs), batch):
        frames = _frames(rgbs[start:start + batch], meta["inset_mode"],
                         insets[start:start + batch] if insets is not None else None)
        results = model.predict(
            frames, imgsz=meta["imgsz"], conf=conf, iou=iou, max_det=max_det, device=dev, verbose=False
        )
        for res in results:
            boxes = res.boxes
            xyxy = boxes.xyxy.cpu().numpy().astype(float)
            scores = boxes.conf.cpu().numpy().astype(float)
            classes = boxes.cls.cpu().numpy().astype(int)
            dets = []
            for box, score, cls in zip(xyxy, scores, classes):
                dets.append({"class": names[cls], "score": round(float(score), 5),
                             "xywh_px": [round(v, 2) for v in xyxy_px_to_xywh_px(box)]})
            out.append(sorted(dets, key=lambda d: -d["score"]))
    return out


def to_coco_results(
    detections: Sequence[Sequence[Detection]], image_ids: Sequence[int], categories: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """COCO results list (``image_id``, ``category_id``, ``bbox``, ``score``).

    Args:
        detections: per image, as returned by ``run_detector``.
        image_ids: the canonical file's image id for each entry of ``detections``.
        categories: the canonical file's categories (name -> id).

    Raises:
        ValueError: lengths differ, or a class is not a category of the canonical file.
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"{len(detections)} detection lists for {len(image_ids)} image ids")
    cat_id = {c["name"]: c["id"] for c in categories}
    results = []
    for image_id, dets in zip(image_ids, detections):
        for det in dets:
            if det["class"] not in cat_id:
                raise ValueError(f"detector class {det['class']!r} is not a category of the canonical file")
            results.append({"image_id": int(image_id), "category_id": cat_id[det["class"]],
                            "bbox": [float(v) for v in det["xywh_px"]], "score": float(det["score"])})
    return results


def save_coco_results(path: str | Path, results: list[dict[str, Any]]) -> None:
    """Write a COCO results JSON (pycocotools' ``loadRes`` reads it)."""
    atomic_write_json(path, results, indent=None)
