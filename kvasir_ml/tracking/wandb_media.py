"""What goes into a W&B run, as pure functions of our data: configs without secrets, flat
summaries, images with boxes, PR curves on a fixed grid. The tracker calls them."""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from kvasir_ml.geometry import xywh_px_to_xyxy_px

_SECRET_KEY = re.compile(r"api[_-]?key|token|passw(or)?d|secret|credential", re.IGNORECASE)
_MAX_SUMMARY_STR = 256


def strip_secrets(config: Any) -> Any:
    """Copy of a (nested) config without keys that look like secrets (api_key, token, ...)."""
    if isinstance(config, dict):
        return {k: strip_secrets(v) for k, v in config.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(config, (list, tuple)):
        return [strip_secrets(v) for v in config]
    return config


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"test": {"ap": 1}}`` -> ``{"test/ap": 1}``; keeps numbers, bools and short strings only
    (lists, arrays and long strings belong in tables or the run folder, not the summary)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_metrics(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, np.integer, np.floating)):
            out[name] = value.item() if isinstance(value, np.generic) else value
        elif isinstance(value, str) and len(value) <= _MAX_SUMMARY_STR:
            out[name] = value
    return out


def boxed_image(sample: dict[str, Any], class_names: Sequence[str], max_side_px: int) -> Any:
    """``wandb.Image`` of one sample with its boxes in two groups, ``ground_truth`` and
    ``predictions`` (pixel domain). Large images are downscaled, boxes with them.

    Args:
        sample: ``{"image": HxWx3 uint8, "caption": str, "boxes": [{"xywh_px", "class",
            "score", "kind": "pred"|"gt"}]}``.
        class_names: box classes; ``class_id`` is the index in this list.
        max_side_px: longest side of the logged image.

    Raises:
        ValueError: a box names a class that is not in ``class_names``.
    """
    import wandb
    from PIL import Image

    rgb = np.asarray(sample["image"], dtype=np.uint8)
    scale = min(1.0, max_side_px / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    index = {name: i for i, name in enumerate(class_names)}
    groups: dict[str, list[dict[str, Any]]] = {"ground_truth": [], "predictions": []}
    for box in sample.get("boxes", []):
        if box["class"] not in index:
            raise ValueError(f"box class {box['class']!r} is not one of {list(class_names)}")
        x0, y0, x1, y1 = xywh_px_to_xyxy_px([float(v) * scale for v in box["xywh_px"]])
        entry: dict[str, Any] = {
            "position": {"minX": x0, "maxX": x1, "minY": y0, "maxY": y1},
            "domain": "pixel", "class_id": int(index[box["class"]]), "box_caption": box["class"],
        }
        if box.get("score") is not None:
            entry["scores"] = {"score": float(box["score"])}
            entry["box_caption"] = f"{box['class']} {float(box['score']):.2f}"
        groups["ground_truth" if box.get("kind") == "gt" else "predictions"].append(entry)
    labels = {i: str(name) for i, name in enumerate(class_names)}
    boxes = {g: {"box_data": data, "class_labels": labels} for g, data in groups.items()}
    return wandb.Image(rgb, caption=str(sample.get("caption", "")), boxes=boxes)


def pr_points(y_true: Any, y_score: Any, class_names: Sequence[str], recall_grid: np.ndarray) -> list[list[Any]]:
    """Rows ``[class, recall, precision]`` of per-class PR curves on a fixed recall grid.

    Precision at recall r is the best precision at any recall >= r (the interpolation AP uses),
    so every class has the same number of points and curves stay readable when overlaid.

    Args:
        y_true: (N, C) 0/1 (multi-label) or (N,) class indices (single-label, one-vs-rest).
        y_score: (N, C) scores.
        class_names: C names.
        recall_grid: increasing recall values in [0, 1].
    """
    from sklearn.metrics import precision_recall_curve

    scores = np.asarray(y_score, dtype=float)
    truth = np.asarray(y_true)
    if truth.ndim == 1:
        truth = (truth[:, None] == np.arange(scores.shape[1])[None, :]).astype(int)
    if truth.shape != scores.shape or scores.shape[1] != len(class_names):
        raise ValueError(f"pr_curves: y_true {truth.shape}, y_score {scores.shape} and "
                         f"{len(class_names)} class names do not match")
    rows: list[list[Any]] = []
    for c, name in enumerate(class_names):
        if truth[:, c].sum() == 0:
            continue  # no positives: precision/recall undefined
        precision, recall, _ = precision_recall_curve(truth[:, c], scores[:, c])
        # running max from the high-recall end gives the interpolated (monotone) precision
        order = np.argsort(recall)
        rec, prec = recall[order], np.maximum.accumulate(precision[order][::-1])[::-1]
        idx = np.searchsorted(rec, recall_grid, side="left").clip(max=len(rec) - 1)
        rows += [[str(name), round(float(r), 4), round(float(p), 4)] for r, p in zip(recall_grid, prec[idx])]
    return rows
