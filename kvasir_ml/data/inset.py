"""The position-map inset (Olympus ScopeGuide) in the bottom-left corner of colonoscopy frames.

Three states occur in the Kvasir family:

* ``green`` - the teal panel (about RGB 0, 191, 149) with the scope's shape drawn on it;
* ``black`` - the panel blacked out by a solid, axis-aligned black rectangle (Kvasir-SEG);
* ``none``  - neither (all upper-GI frames, many lower-GI ones).

The panel says nothing about the mucosa, yet it correlates with the class (lower vs upper
GI), so a model can learn it as a shortcut. ``detect_inset`` finds it, ``mask_inset`` blacks
out a box, ``crop_inset`` cuts one out (for an inset branch). The models hide one region fixed
by the frame size, ``hiding_box_xywh_px``, on every frame: a mask that followed the detected
panel would itself tell the state.

How the black state is told apart from the ordinary black frame border: endoscopy frames
have an octagonal/rounded black mask, so the bottom-left corner is often dark anyway. The
blacked-out panel (pure black, 0-6 after JPEG, darker than any shadowed mucosa) is a block
joined to the left edge whose right edge is a long straight vertical line (many rows end
their dark run at the same column) and whose top edge has mucosa above it, ending where it
starts (a border band runs on upwards; an octagon diagonal never gives a straight edge).
Per-row dark-run lengths on a strided copy find it; medians at full resolution refine it.
Its left and bottom sides merge with the border, so its box runs from the left image edge
to the bottom of the dark block (usually the bottom image edge).

Cost: about 3 ms per 622x529 frame (scripts/measure_inset.py), mostly strided slicing
(measured before ``dark_mask`` went channel by channel, 2026-12-06: less now).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvasir_ml.taxonomy import INSET_STATES as INSET_STATES  # the states detect_inset returns

PANEL_RGB = (0, 191, 149)  # the ScopeGuide panel colour

# Where the panel lives, as fractions of (width, height). Measured on the real images
# (docs/inset.md): the 24 green panels span x 0.05-0.34, y 0.67-0.96 (medians; all 24 lie
# inside the nominal box plus the hiding margin); Kvasir-SEG's 561 black rectangles run from
# the left edge to x 0.33 (0.24-0.39) and from y 0.68 (0.59-0.73) to the bottom edge (5th/50th/
# 95th percentiles). The nominal box covers both at their medians; it is also the region the
# models hide (``hiding_box_xywh_px``), the same on every frame of a size.
NOMINAL_X0, NOMINAL_X1 = 0.0, 0.36
NOMINAL_Y0, NOMINAL_Y1 = 0.62, 1.0

# The search window for detection (fractions of width/height): generous around the nominal box.
_SEARCH_X1 = 0.55
_SEARCH_Y0 = 0.40

# Colour thresholds on 0-255 channels. The panel is teal: G and B high, R near zero; mucosa
# is red/pink (R > G), indigo-carmine dye is blue with G < B. JPEG bleeds colours at edges,
# so the margins are wide.
_GREEN_MIN_G = 110
_GREEN_MIN_G_MINUS_R = 70
_GREEN_MIN_B_MINUS_R = 40
_GREEN_MAX_ABS_G_MINUS_B = 90
# Solid black: the blacked-out rectangle is 0-20 after JPEG; a dark lumen is usually above this.
_DARK_MAX = 12

# Decision thresholds (see docs/inset.md for the measured distributions behind them).
_GREEN_MIN_FILL = 0.45  # green pixels inside the green bounding box
_GREEN_MIN_AREA = 0.015  # green bounding box area / image area
_BLACK_MIN_SUPPORT = 0.3  # rows of the block whose dark run ends exactly at its right edge
_BLACK_MIN_TOP = 0.1  # columns of the block that are bright just above its top edge
_BLACK_MIN_TOP_NARROW = 0.6  # the same for blocks narrower than _BLACK_WIDE_W
_BLACK_WIDE_W = 0.12
_BLACK_MIN_SCORE = 0.9  # the two supports together
_BLACK_MAX_CONTINUE = 0.15  # how far (fraction of height) dark may go on above the top edge
_BLACK_MIN_W, _BLACK_MAX_W = 0.07, 0.55  # rectangle right edge, fraction of width
_BLACK_MIN_H = 0.12  # rectangle height, fraction of height


@dataclass(frozen=True)
class InsetResult:
    """What ``detect_inset`` found.

    Attributes:
        state: "green", "black" or "none".
        box_xywh_px: the panel (or black rectangle) as ``(x, y, w, h)`` pixels, None for "none".
        green_fraction: fraction of panel-green pixels in the nominal box.
        black_fraction: fraction of near-black pixels in the nominal box.
    """

    state: str
    box_xywh_px: tuple[float, float, float, float] | None
    green_fraction: float
    black_fraction: float


def nominal_inset_box_xywh_px(width_px: int, height_px: int) -> tuple[float, float, float, float]:
    """The bottom-left region where the panel lives (used when nothing is detected).

    Args:
        width_px: image width.
        height_px: image height.

    Returns:
        ``(x, y, w, h)`` in pixels, inside the image.
    """
    if width_px <= 0 or height_px <= 0:
        raise ValueError(f"nominal inset box: image size must be positive, got {width_px}x{height_px}")
    # min(..., side - 1): on a 1-px-high (or -wide) image the rounded start would be the
    # image edge itself and the box would lie outside the image.
    x0, x1 = min(round(NOMINAL_X0 * width_px), width_px - 1), round(NOMINAL_X1 * width_px)
    y0, y1 = min(round(NOMINAL_Y0 * height_px), height_px - 1), round(NOMINAL_Y1 * height_px)
    return (float(x0), float(y0), float(max(1, x1 - x0)), float(max(1, y1 - y0)))


# Margin added around the hidden region, as a fraction of the larger image side: resizing
# smears the panel's teal into its neighbours.
HIDE_MARGIN_FRAC = 0.02


def hiding_box_xywh_px(width_px: int, height_px: int, *,
                       margin_frac: float = HIDE_MARGIN_FRAC) -> tuple[float, float, float, float]:
    """The region hidden from the main image in the models' ``masked``/``branch`` modes.

    The nominal region grown by a margin and clipped to the image: a function of the frame
    size only, never of the detected inset. An earlier version united the nominal region with
    the detected box, assuming detected boxes lie inside it; Kvasir-SEG's blacked-out
    rectangles do not (they are drawn at varying sizes on frames cropped at varying sizes: top
    edge at 41-86 % of the height, right edge at 8-51 % of the width), so 71 of 561 "black"
    frames got a taller or wider mask than any "none" frame of the same size, and the mask's
    shape told the state. Now every frame of a given size hides the same pixels whatever its
    state. The price is measured in docs/inset.md: parts of some black rectangles stay visible
    above or right of the region.

    Args:
        width_px: image width.
        height_px: image height.
        margin_frac: margin as a fraction of the larger side.

    Returns:
        ``(x, y, w, h)`` in pixels, inside the image.
    """
    x0, y0, w, h = nominal_inset_box_xywh_px(width_px, height_px)
    margin = margin_frac * max(width_px, height_px)
    x1, y1 = min(float(width_px), x0 + w + margin), min(float(height_px), y0 + h + margin)
    x0, y0 = max(0.0, x0 - margin), max(0.0, y0 - margin)
    return (x0, y0, x1 - x0, y1 - y0)


def box_slices(shape_hw: tuple[int, ...], box_xywh_px) -> tuple[slice, slice]:
    """Rows and columns of an image of ``shape_hw`` that a pixel box covers, rounded outwards
    and clipped to the image (the rounding ``mask_inset`` and ``crop_inset`` use).

    Raises:
        ValueError: a box without area or outside the image.
    """
    if len(shape_hw) < 2:
        raise ValueError(f"expected an HxW(xC) image, got shape {tuple(shape_hw)}")
    height, width = shape_hw[:2]
    x, y, w, h = (float(v) for v in box_xywh_px)
    if w <= 0 or h <= 0:
        raise ValueError(f"inset box {tuple(box_xywh_px)} has no area")
    x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x1, y1 = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"inset box {tuple(box_xywh_px)} lies outside the {width}x{height} image")
    return slice(y0, y1), slice(x0, x1)


def mask_inset(rgb: np.ndarray, box_xywh_px) -> np.ndarray:
    """A copy of ``rgb`` with the box set to 0 (black). The box is clipped to the image.

    Args:
        rgb: HxWx3 (or HxW) array.
        box_xywh_px: ``(x, y, w, h)`` pixels, e.g. ``detect_inset(rgb).box_xywh_px`` or the
            nominal box.

    Returns:
        A new array of the same shape and dtype.
    """
    rows, cols = box_slices(rgb.shape, box_xywh_px)
    out = rgb.copy()
    out[rows, cols] = 0
    return out


def crop_inset(rgb: np.ndarray, box_xywh_px) -> np.ndarray:
    """A copy of the box region of ``rgb`` (clipped to the image).

    Args:
        rgb: HxWx3 (or HxW) array.
        box_xywh_px: ``(x, y, w, h)`` pixels.

    Returns:
        ``(h, w, 3)`` array (a copy, safe to modify).
    """
    rows, cols = box_slices(rgb.shape, box_xywh_px)
    return rgb[rows, cols].copy()


def green_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of panel-teal pixels (vectorised; works on any HxWx3 uint8 array)."""
    r = rgb[..., 0].astype(np.int16)
    g = rgb[..., 1].astype(np.int16)
    b = rgb[..., 2].astype(np.int16)
    return (
        (g >= _GREEN_MIN_G)
        & (g - r >= _GREEN_MIN_G_MINUS_R)
        & (b - r >= _GREEN_MIN_B_MINUS_R)
        & (np.abs(g - b) <= _GREEN_MAX_ABS_G_MINUS_B)
    )


def dark_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of near-black pixels (all channels below the dark threshold)."""
    # Channel by channel: a max over the short last axis (``rgb.max(axis=-1)``) is ~20x slower
    # in numpy, and this mask is most of detect_inset's cost on a video frame.
    brightest = rgb[..., 0]
    for c in range(1, rgb.shape[-1]):
        brightest = np.maximum(brightest, rgb[..., c])
    return brightest < _DARK_MAX


def _stride(height: int, width: int) -> int:
    # About 160 px across the full width is plenty for a panel that is ~30% of it.
    return max(1, min(height, width) // 130)


def _projection_extent(counts: np.ndarray, min_count: float) -> tuple[int, int] | None:
    """First and last index (inclusive) of the longest run of ``counts >= min_count``."""
    on = counts >= min_count
    if not on.any():
        return None
    padded = np.concatenate(([0], on.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[0::2], edges[1::2]
    best = int(np.argmax(ends - starts))
    return int(starts[best]), int(ends[best] - 1)


def _find_green(rgb: np.ndarray, oy: int, step: int) -> tuple[float, float, float, float] | None:
    """Bounding box (full-res px) of the teal panel in the bottom-left search window."""
    height, width = rgb.shape[:2]
    small = rgb[oy:height:step, 0 : int(_SEARCH_X1 * width) : step]
    mask = green_mask(small)
    if mask.sum() < 16:
        return None
    # Row/column projections: the panel is a filled rectangle, so its rows and columns hold
    # many green pixels; stray teal pixels elsewhere do not.
    rows = _projection_extent(mask.sum(axis=1), 0.4 * mask.sum(axis=1).max())
    cols = _projection_extent(mask.sum(axis=0), 0.4 * mask.sum(axis=0).max())
    if rows is None or cols is None:
        return None
    r0, r1 = rows
    c0, c1 = cols
    fill = mask[r0 : r1 + 1, c0 : c1 + 1].mean()
    x0, x1 = c0 * step, min(width, (c1 + 1) * step)
    y0, y1 = oy + r0 * step, min(height, oy + (r1 + 1) * step)
    if fill < _GREEN_MIN_FILL or (x1 - x0) * (y1 - y0) < _GREEN_MIN_AREA * width * height:
        return None
    return _refine_green(rgb, (x0, y0, x1, y1), step)


def _refine_green(rgb: np.ndarray, box_xyxy: tuple[int, int, int, int], step: int) -> tuple[float, float, float, float]:
    """Tighten the strided box to full-resolution pixels within one stride of its edges."""
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box_xyxy
    ex0, ey0 = max(0, x0 - step), max(0, y0 - step)
    ex1, ey1 = min(width, x1 + step), min(height, y1 + step)
    mask = green_mask(rgb[ey0:ey1, ex0:ex1])
    rows = _projection_extent(mask.sum(axis=1), 0.4 * mask.sum(axis=1).max())
    cols = _projection_extent(mask.sum(axis=0), 0.4 * mask.sum(axis=0).max())
    if rows is None or cols is None:
        return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
    fx0, fx1 = ex0 + cols[0], ex0 + cols[1] + 1
    fy0, fy1 = ey0 + rows[0], ey0 + rows[1] + 1
    return (float(fx0), float(fy0), float(fx1 - fx0), float(fy1 - fy0))


def _left_runs(dark: np.ndarray) -> np.ndarray:
    """Per row, the length of the dark run that starts at the left image edge."""
    first_bright = np.argmin(dark, axis=1)
    return np.where(dark.all(axis=1), dark.shape[1], first_bright)


def _runs(on: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of every run of True values."""
    padded = np.concatenate(([0], on.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _right_edge_candidates(left: np.ndarray, h: int, w: int) -> list[int]:
    """Columns where many lower rows end their left dark run (a vertical straight edge)."""
    lower = left[int(_SEARCH_Y0 * h) :]
    lower = lower[(lower >= _BLACK_MIN_W * w) & (lower <= _BLACK_MAX_W * w)]
    if lower.size < _BLACK_MIN_H * h:
        return []
    counts = np.bincount(lower, minlength=w + 2).astype(np.int32)
    smooth = counts[:-2] + counts[1:-1] + counts[2:]  # +-1 column of JPEG wobble
    order = np.argsort(smooth)[::-1][:3] + 1
    return [int(x) for x in order if smooth[x - 1] >= _BLACK_MIN_H * h]


def _black_rect_at(dark: np.ndarray, left: np.ndarray, x1: int) -> tuple[float, int, int] | None:
    """Score, top row and bottom row (exclusive) of a black block whose right edge is x1.

    The block is the run of rows whose left dark run reaches x1. Evidence: many of those rows
    end exactly at x1 (a straight vertical edge; dark mucosa next to the block lengthens a
    few), and many columns of the block are bright just above its top row (a straight
    horizontal edge; a dark lumen above the block hides part of it).
    """
    h, w = dark.shape
    tol = 1  # JPEG wobble of the edge, in strided pixels
    # Narrow blocks (a panel mostly cropped away) need a clear top edge: the octagon's
    # vertical side, under its diagonal, looks like a narrow block with a weak top edge.
    min_top = _BLACK_MIN_TOP if x1 >= _BLACK_WIDE_W * w else _BLACK_MIN_TOP_NARROW
    best = None
    # Rows belong to the block while their dark run nearly reaches x1 (some overlays jog the
    # edge by a few pixels); only rows ending exactly at x1 count as support.
    for a, b in _runs(left >= x1 - 3 * tol):
        if b <= _SEARCH_Y0 * h or b - a < _BLACK_MIN_H * h:
            continue
        support_r = float(np.mean(np.abs(left[a:b] - x1) <= tol))
        above = dark[max(0, a - max(4, int(0.06 * h))) : a, int(0.1 * x1) : x1 - tol]
        support_t = 1.0 - float(above.all(axis=0).mean()) if above.size else 0.0
        score = support_r + support_t
        if support_r < _BLACK_MIN_SUPPORT or support_t < min_top or score < _BLACK_MIN_SCORE:
            continue
        if a < _SEARCH_Y0 * h or _continues_up(dark, a, x1 - tol) > _BLACK_MAX_CONTINUE * h:
            continue
        if best is None or score > best[0]:
            best = (score, a, b)
    return best


def _continues_up(dark: np.ndarray, top: int, x1: int) -> float:
    """How far the dark region goes up from ``top`` just inside the right edge (median of 3 columns).

    A border band continues far up (its text sits further left); a blacked-out panel stops at
    its top edge, or soon after where a dark lumen touches it.
    """
    cols = dark[:top, max(0, x1 - 3) : max(1, x1)][::-1]
    if cols.size == 0:
        return 0.0
    return float(np.median(_first_true(~cols, axis=0)))


def _find_black(rgb: np.ndarray, step: int) -> tuple[float, float, float, float] | None:
    """The blacked-out rectangle (full-res px), or None if the dark region has no such block."""
    height, width = rgb.shape[:2]
    dark = dark_mask(rgb[::step, ::step])
    h, w = dark.shape
    left = _left_runs(dark)
    found = []
    for x1 in _right_edge_candidates(left, h, w):
        rect = _black_rect_at(dark, left, x1)
        if rect is not None:
            found.append((rect[0], x1, rect[1], rect[2]))
    if not found:
        return None
    _, x1, y0, y1 = max(found)
    return _refine_black(rgb, (0, y0 * step, min(width, x1 * step), min(height, y1 * step)), step)


def _first_true(mask: np.ndarray, axis: int) -> np.ndarray:
    """Index of the first True along ``axis`` (the length of the axis where there is none)."""
    return np.where(mask.any(axis=axis), np.argmax(mask, axis=axis), mask.shape[axis])


def _refine_black(rgb: np.ndarray, box_xyxy: tuple[int, int, int, int], step: int) -> tuple[float, float, float, float]:
    """Move the top and right edges to the full-resolution dark/bright transition.

    Medians over many rows/columns: mucosa that happens to be dark next to the block moves
    single profiles, not the median.
    """
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box_xyxy
    span = 2 * step
    wy0, wx0 = max(0, y0 - span), max(0, x1 - span)
    # Top edge: per column in the right third of the block, the first dark row.
    band = dark_mask(rgb[wy0 : min(height, y0 + span), max(x0, x1 - max(4, (x1 - x0) // 3)) : max(x0 + 1, x1 - step)])
    fy0 = wy0 + int(np.median(_first_true(band, axis=0)))
    # Right edge: per row in the upper part of the block, the first bright column.
    rows_end = min(y1, fy0 + step + max(4, (y1 - fy0) // 2))
    band = ~dark_mask(rgb[min(fy0 + step, rows_end - 1) : rows_end, wx0 : min(width, x1 + span)])
    fx1 = max(x0 + 1, wx0 + int(np.median(_first_true(band, axis=1))))
    fy0 = min(fy0, y1 - 1)
    return (float(x0), float(fy0), float(fx1 - x0), float(y1 - fy0))


def detect_inset(rgb: np.ndarray) -> InsetResult:
    """Find the position-map panel in one frame.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB image (as from ``kvasir_ml.data.images.load_rgb``).

    Returns:
        InsetResult with the state ("green" > "black" > "none": a green panel wins even when
        it sits inside a black frame), the tight box in pixels (None for "none"), and the
        green/black pixel fractions in the nominal box.

    Raises:
        ValueError: not an HxWx3 array.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"detect_inset expects an (H, W, 3) RGB array, got shape {rgb.shape}")
    height, width = rgb.shape[:2]
    step = _stride(height, width)
    rows, cols = box_slices(rgb.shape, nominal_inset_box_xywh_px(width, height))
    nominal = rgb[rows, cols][::step, ::step]
    green_fraction = float(green_mask(nominal).mean())
    black_fraction = float(dark_mask(nominal).mean())
    oy = int(_SEARCH_Y0 * height)
    if green_fraction >= 0.05:
        box = _find_green(rgb, oy, step)
        if box is not None:
            return InsetResult("green", box, green_fraction, black_fraction)
    if black_fraction >= 0.15:
        box = _find_black(rgb, step)
        if box is not None:
            return InsetResult("black", box, green_fraction, black_fraction)
    return InsetResult("none", None, green_fraction, black_fraction)
