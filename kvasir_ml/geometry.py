"""Box conversions between the four conventions used around the project.

Names carry the convention and unit:

* ``xyxy_px``     — Kvasir-SEG: ``xmin, ymin, xmax, ymax`` in pixels.
* ``xywh_px``     — COCO: top-left ``x, y`` and ``w, h`` in pixels (the canonical form).
* ``cxcywh_norm`` — YOLO: centre and size normalised to 0–1 by the image size.
* ``xywh_pct``    — Label Studio: top-left ``x, y`` and ``width, height`` in percent
  of the original image size.

Every conversion is written once, here. Conversions are exact in floating point up to
rounding; ``clip_xywh_px`` and ``validate_xywh_px`` make clipping and rejection explicit.
"""

from __future__ import annotations

from typing import Sequence

Box = tuple[float, float, float, float]


class BoxError(ValueError):
    """A box is degenerate or lies outside its image."""


def xyxy_px_to_xywh_px(box: Sequence[float]) -> Box:
    x0, y0, x1, y1 = map(float, box)
    return (x0, y0, x1 - x0, y1 - y0)


def xywh_px_to_xyxy_px(box: Sequence[float]) -> Box:
    x, y, w, h = map(float, box)
    return (x, y, x + w, y + h)


def xywh_px_to_cxcywh_norm(box: Sequence[float], width_px: float, height_px: float) -> Box:
    x, y, w, h = map(float, box)
    return ((x + w / 2) / width_px, (y + h / 2) / height_px, w / width_px, h / height_px)


def cxcywh_norm_to_xywh_px(box: Sequence[float], width_px: float, height_px: float) -> Box:
    cx, cy, w, h = map(float, box)
    w_px, h_px = w * width_px, h * height_px
    return (cx * width_px - w_px / 2, cy * height_px - h_px / 2, w_px, h_px)


def xywh_px_to_xywh_pct(box: Sequence[float], width_px: float, height_px: float) -> Box:
    x, y, w, h = map(float, box)
    return (100.0 * x / width_px, 100.0 * y / height_px, 100.0 * w / width_px, 100.0 * h / height_px)


def xywh_pct_to_xywh_px(box: Sequence[float], width_px: float, height_px: float) -> Box:
    x, y, w, h = map(float, box)
    return (x * width_px / 100.0, y * height_px / 100.0, w * width_px / 100.0, h * height_px / 100.0)


def clip_xywh_px(box: Sequence[float], width_px: float, height_px: float) -> Box:
    """Clip a box to the image; the result may have zero area (check with validate)."""
    x0, y0, x1, y1 = xywh_px_to_xyxy_px(box)
    x0, x1 = min(max(x0, 0.0), width_px), min(max(x1, 0.0), width_px)
    y0, y1 = min(max(y0, 0.0), height_px), min(max(y1, 0.0), height_px)
    return xyxy_px_to_xywh_px((x0, y0, x1, y1))


def inside_fraction_xywh_px(box: Sequence[float], width_px: float, height_px: float) -> float:
    """Share of a box's area inside the image (0 for a box without area)."""
    area = float(box[2]) * float(box[3])
    clipped = clip_xywh_px(box, width_px, height_px)
    return clipped[2] * clipped[3] / area if area > 0 else 0.0


def outside_image_xywh_px(box: Sequence[float], width_px: float, height_px: float, tolerance_px: float = 0.5) -> bool:
    """True when the box extends past the image border by more than ``tolerance_px``."""
    x0, y0, x1, y1 = xywh_px_to_xyxy_px(box)
    return x0 < -tolerance_px or y0 < -tolerance_px or x1 > width_px + tolerance_px or y1 > height_px + tolerance_px


def validate_xywh_px(
    box: Sequence[float], width_px: float, height_px: float, tolerance_px: float = 0.5
) -> Box:
    """Return the box if it has positive area and lies inside the image.

    ``tolerance_px`` allows for rounding at the border (e.g. a box ending at ``width + 0.3``
    after a percent round trip); such boxes are clipped.

    Raises:
        BoxError: zero/negative size, non-finite numbers, or a box outside the image.
    """
    x, y, w, h = map(float, box)
    if not all(v == v and abs(v) != float("inf") for v in (x, y, w, h)):
        raise BoxError(f"box {list(box)} has non-finite numbers")
    if w <= 0 or h <= 0:
        raise BoxError(f"box {list(box)} has zero or negative size")
    if outside_image_xywh_px((x, y, w, h), width_px, height_px, tolerance_px):
        raise BoxError(f"box {list(box)} (x, y, w, h px) lies outside the {width_px:g}x{height_px:g} image")
    return clip_xywh_px((x, y, w, h), width_px, height_px)


def iou_xywh_px(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two pixel boxes."""
    ax0, ay0, ax1, ay1 = xywh_px_to_xyxy_px(a)
    bx0, by0, bx1, by1 = xywh_px_to_xyxy_px(b)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
