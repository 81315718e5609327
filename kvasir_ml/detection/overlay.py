"""Overlays for error analysis: ground truth (green) vs predictions (red, with scores).

Drawn with PIL's default font only (no font files, nothing fetched).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFont

from kvasir_ml.data.images import load_rgb
from kvasir_ml.geometry import xywh_px_to_xyxy_px

GT_RGB = (0, 230, 0)
PRED_RGB = (255, 40, 40)


def draw_overlay(
    image_path: str | Path,
    gt_boxes: Sequence[dict[str, Any]],
    pred_boxes: Sequence[dict[str, Any]],
    out_path: str | Path,
    min_score: float = 0.25,
    max_side_px: int = 640,
) -> Path:
    """Draw GT and predicted boxes on a frame and save a PNG.

    Args:
        image_path: the original frame (boxes are in its pixels).
        gt_boxes: ``[{"class", "xywh_px"}]``.
        pred_boxes: ``[{"class", "score", "xywh_px"}]``; those below ``min_score`` are skipped.
        out_path: PNG to write.
        min_score: lowest score drawn.
        max_side_px: the frame is downscaled so its longer side is at most this.

    Returns:
        ``out_path``.
    """
    img = Image.fromarray(load_rgb(image_path))
    scale = min(1.0, max_side_px / max(img.size))
    if scale < 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    width = max(1, round(2 * max(img.size) / 640))
    for box in gt_boxes:
        _box(draw, box["xywh_px"], scale, GT_RGB, f"GT {box['class']}", font, width, below=True)
    for box in pred_boxes:
        if box["score"] >= min_score:
            _box(draw, box["xywh_px"], scale, PRED_RGB, f"{box['class']} {box['score']:.2f}", font, width, below=False)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


def _box(draw: ImageDraw.ImageDraw, xywh_px, scale: float, colour, text: str, font, width: int, below: bool) -> None:
    x, y, x1, y1 = xywh_px_to_xyxy_px([float(v) * scale for v in xywh_px])
    draw.rectangle([x, y, x1, y1], outline=colour, width=width)
    # GT captions go under the box's top edge, predictions above it, so they do not collide.
    ty = y + width if below else max(0.0, y - 12)
    left, top, right, bottom = draw.textbbox((x + width, ty), text, font=font)
    draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=(0, 0, 0))
    draw.text((x + width, ty), text, fill=colour, font=font)
