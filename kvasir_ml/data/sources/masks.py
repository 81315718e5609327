"""Boxes from segmentation masks (Kvasir-SEG / HyperKvasir / CVC-ClinicDB masks).

Masks are stored as JPEGs, so their edges carry compression noise: the mask is thresholded
at mid-grey and connected components smaller than ``min_area_frac`` of the image are
dropped as speckle. Each remaining component gives one box whose edges are pixel edges
(``x`` = first foreground column, ``w`` = last - first + 1).

Kvasir-SEG's own ``kavsir_bboxes.json`` uses a slightly different convention: its
``xmin``/``ymin`` are usually one pixel smaller (first foreground index - 1) while
``xmax``/``ymax`` match the exclusive edge, so boxes derived here differ from the JSON by
about 1 px on the top/left edge for most images.
"""

from __future__ import annotations

import numpy as np

# Mid-grey: JPEG ringing on a 0/255 mask stays well clear of it (0-30 and 225-255).
MASK_THRESHOLD = 127
# Components below 0.05% of the image (~160 px on a 622x529 frame) are JPEG speckle.
MIN_AREA_FRAC = 0.0005


def boxes_from_mask(
    mask: np.ndarray, threshold: int = MASK_THRESHOLD, min_area_frac: float = MIN_AREA_FRAC
) -> list[tuple[float, float, float, float]]:
    """One ``xywh_px`` box per connected foreground component, largest first.

    Args:
        mask: ``(H, W)`` or ``(H, W, C)`` uint8 mask; foreground is bright (any channel).
        threshold: foreground is ``> threshold``.
        min_area_frac: drop components smaller than this fraction of the image area.

    Returns:
        Boxes ``(x, y, w, h)`` in pixels, sorted by component area (largest first).
    """
    import cv2  # imported here: only mask-derived boxes need OpenCV

    grey = mask.max(axis=2) if mask.ndim == 3 else mask
    fg = (grey > threshold).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    min_area_px = min_area_frac * fg.shape[0] * fg.shape[1]
    comps = [stats[i] for i in range(1, n) if stats[i][cv2.CC_STAT_AREA] >= min_area_px]
    comps.sort(key=lambda s: -int(s[cv2.CC_STAT_AREA]))
    return [
        (
            float(s[cv2.CC_STAT_LEFT]),
            float(s[cv2.CC_STAT_TOP]),
            float(s[cv2.CC_STAT_WIDTH]),
            float(s[cv2.CC_STAT_HEIGHT]),
        )
        for s in comps
    ]
