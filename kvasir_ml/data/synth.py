"""Synthetic Kvasir-like frames: a tiny, deterministic dataset for tests, docs and demos.

Each frame is drawn from one of the 8 Kvasir v2 source classes (the taxonomy's "synthetic"
source) and carries that class's label set, sometimes with extra findings on top (a polyp
in a caecum frame, ulcerative colitis around a polyp, dye on a polyp...). A single-label
model cannot express those extras; a multi-label model can. ``cooccurrence`` sets how
extras appear (``COOCCURRENCE_MODES``): the default class-specific ones; ``independent``,
where ``INDEPENDENT_FINDINGS`` appear on any frame with the same probability whatever its
class (the positive control of the comparison: the label set is NOT a function of the
class); ``none``, where every frame carries exactly its class's labels (the negative
control: a single-label model loses nothing). Every label has a simple,
learnable visual signature (see ``_FEATURES``), so a small network learns it at 64-128 px.
``finding_contrast`` < 1 fades every signature (vessels and findings) towards the bare
mucosa, a harder task with the same labels and layout: at 1.0 (the default) the frames are
those of earlier versions, byte for byte.

Like the real data, lower-GI frames carry the position-map inset (green panel 50%,
blacked-out rectangle 30%, none 20%) and upper-GI frames never show the green panel.
``kvasir_ml.data.inset.detect_inset`` agrees with the recorded ``inset``/``inset_box``.

Determinism: image ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` only, so the
same seed gives the same bytes (JPEGs and JSON), and the first k images do not depend on n.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.io import sha256_file
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

SOURCE = "synthetic"
ANNOTATIONS_NAME = "annotations.coco.json"
JPEG_QUALITY = 92
# Bump when the drawing changes: an existing folder from another version is not reused.
GENERATOR_VERSION = 1
# Inset state probabilities for lower-GI frames (green, black, none); upper-GI: always none.
LOWER_GI_INSET_P = (0.5, 0.3, 0.2)
PANEL_RGB = (0, 191, 149)
# Extra findings drawn on top of a class's own labels: (class, extra label, probability).
EXTRA_FINDINGS = (
    ("normal-cecum", "polyp", 0.35),
    ("ulcerative-colitis", "polyp", 0.3),
    ("polyps", "ulcerative-colitis", 0.2),
    ("polyps", "dyed", 0.2),
    ("dyed-resection-margins", "polyp", 0.25),
    ("normal-z-line", "esophagitis", 0.0),  # esophagitis is a class of its own (with z-line)
)
COOCCURRENCE_MODES = ("default", "independent", "none")
# cooccurrence="independent": each of these is added to any frame (whatever its class) with
# probability INDEPENDENT_P, unless the class's label set already has it.
INDEPENDENT_FINDINGS = ("polyp", "dyed", "ulcerative-colitis")
INDEPENDENT_P = 0.3
# finding_contrast: 1.0 = full signatures; lower fades them towards the mucosa (harder frames).
DEFAULT_FINDING_CONTRAST = 1.0
# The fixed creation date keeps the canonical JSON byte-identical across runs.
_FIXED_DATE = "1970-01-01T00:00:00Z"


class SynthError(ValueError):
    """Bad arguments to the generator, or an output folder that would be overwritten."""


# ---- small drawing helpers (float32 RGB canvas in 0..1) ----------------------------------
def _noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a ``cells``-wide random grid upsampled bilinearly."""
    cells = max(2, int(cells))
    ch = max(2, int(round(cells * h / w)))
    grid = rng.random((ch, cells), dtype=np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) * 2.0 - 1.0


def _blend(canvas: np.ndarray, mask: np.ndarray, rgb, alpha: float = 1.0) -> None:
    """In place: canvas = canvas * (1 - a) + rgb * a with a = alpha * mask."""
    a = (alpha * mask)[..., None]
    canvas *= 1.0 - a
    canvas += a * np.asarray(rgb, dtype=np.float32)


def _blob(xx, yy, cx, cy, rx, ry, rng, lobes: float = 0.12, soft: float = 0.12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft irregular ellipse: (mask 0..1, nx, ny) with nx, ny the normalised offsets."""
    nx, ny = (xx - cx) / rx, (yy - cy) / ry
    theta = np.arctan2(ny, nx)
    k1, k2 = rng.integers(2, 5), rng.integers(5, 8)
    p1, p2 = rng.uniform(0, 2 * math.pi, 2)
    radius = 1.0 + lobes * np.sin(k1 * theta + p1) + 0.5 * lobes * np.sin(k2 * theta + p2)
    d = np.sqrt(nx * nx + ny * ny) / radius
    return np.clip((1.0 - d) / soft, 0.0, 1.0), nx, ny


def _line_mask(h: int, w: int, polylines, width: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """Rasterise polylines (lists of (x, y)) with PIL: (window slices, 0..1 mask of the window)."""
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    for pts in polylines:
        draw.line([tuple(map(float, p)) for p in pts], fill=255, width=int(width), joint="curve")
    bbox = img.getbbox() or (0, 0, 1, 1)  # blend only where something was drawn
    sl = (slice(bbox[1], bbox[3]), slice(bbox[0], bbox[2]))
    return sl, np.asarray(img.crop(bbox), dtype=np.float32) / 255.0


def _blend_lines(canvas: np.ndarray, polylines, width: int, rgb, alpha: float) -> None:
    sl, mask = _line_mask(canvas.shape[0], canvas.shape[1], polylines, width)
    _blend(canvas[sl], mask, rgb, alpha)


def _random_walk(rng, x, y, n, step, angle, turn) -> list[tuple[float, float]]:
    pts = [(x, y)]
    for _ in range(n):
        angle += rng.normal(0, turn)
        x, y = x + step * math.cos(angle), y + step * math.sin(angle)
        pts.append((x, y))
    return pts


def _box_of(mask: np.ndarray, level: float = 0.5) -> list[float] | None:
    ys, xs = np.nonzero(mask >= level)
    if ys.size == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _window(shape: tuple[int, ...], cx: float, cy: float, rx: float, ry: float, margin: float = 1.4) -> tuple[slice, slice]:
    """Row/column slices around an ellipse: drawing only there keeps a frame at ~10 ms."""
    h, w = shape[:2]
    y0, y1 = max(0, int(cy - margin * ry) - 1), min(h, int(cy + margin * ry) + 2)
    x0, x1 = max(0, int(cx - margin * rx) - 1), min(w, int(cx + margin * rx) + 2)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


# ---- the scene -----------------------------------------------------------------------
class _Scene:
    """One frame being drawn: canvas, grid, lumen centre and the boxes found so far."""

    _zline: tuple[Any, ...]  # (r0, k, p1, p2), set by _zline_radius on first use

    def __init__(self, rng: np.random.Generator, w: int, h: int, upper: bool):
        self.rng, self.w, self.h, self.upper = rng, w, h, upper
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.size = float(min(w, h))
        # Findings live in the middle of the frame, away from the inset and the text.
        self.cx = w * rng.uniform(0.42, 0.62)
        self.cy = h * rng.uniform(0.32, 0.5)
        self.boxes: list[tuple[str, list[float]]] = []
        self.canvas = self._mucosa()

    def _mucosa(self) -> np.ndarray:
        rng, h, w = self.rng, self.h, self.w
        if self.upper:  # pale pink gastric/oesophageal mucosa
            base = rng.uniform([0.84, 0.56, 0.52], [0.92, 0.66, 0.62])
        else:  # orange-pink colon
            base = rng.uniform([0.80, 0.42, 0.30], [0.90, 0.54, 0.40])
        canvas = np.empty((h, w, 3), dtype=np.float32)
        canvas[:] = base
        low, fine = _noise(rng, h, w, 4), _noise(rng, h, w, w // 5)
        # Light falls off towards a dark lumen (far wall) somewhere off the findings.
        lx = w * rng.uniform(0.25, 0.8)
        ly = h * rng.uniform(0.2, 0.7)
        lumen = np.exp(-((self.xx - lx) ** 2 + (self.yy - ly) ** 2) / (2 * (0.16 * self.size) ** 2))
        shade = 0.95 + 0.12 * low + 0.04 * fine - 0.55 * lumen * rng.uniform(0.5, 1.0)
        canvas *= shade[..., None]
        # Haustral folds / rugae: soft darker arcs.
        arcs = []
        for _ in range(rng.integers(2, 5)):
            r = self.size * rng.uniform(0.25, 0.6)
            a0 = rng.uniform(0, 2 * math.pi)
            arcs.append([(lx + r * math.cos(a0 + t), ly + r * math.sin(a0 + t)) for t in np.linspace(0, 2.2, 12)])
        _blend_lines(canvas, arcs, max(3, int(self.size * 0.03)), (0.45, 0.16, 0.12), 0.35)
        return canvas

    def blob(self, cx, cy, rx, ry, lobes: float = 0.12, soft: float = 0.12):
        """Windowed ``_blob``: (window slices, mask, nx, ny), all of the window's shape."""
        sl = _window(self.canvas.shape, cx, cy, rx * (1 + 1.5 * lobes), ry * (1 + 1.5 * lobes))
        mask, nx, ny = _blob(self.xx[sl], self.yy[sl], cx, cy, rx, ry, self.rng, lobes, soft)
        return sl, mask, nx, ny

    def vessels(self, alpha: float = 0.45) -> None:
        rng = self.rng
        lines = [
            _random_walk(rng, rng.uniform(0, self.w), rng.uniform(0, self.h), 14, self.size * 0.04, rng.uniform(0, 6.3), 0.5)
            for _ in range(rng.integers(4, 9))
        ]
        _blend_lines(self.canvas, lines, 1, (0.55, 0.12, 0.14), alpha)

    def speculars(self) -> None:
        rng = self.rng
        for _ in range(rng.integers(3, 10)):
            cx, cy = rng.uniform(0.1, 0.9) * self.w, rng.uniform(0.05, 0.9) * self.h
            r = self.size * rng.uniform(0.005, 0.02)
            sl, mask, _, _ = self.blob(cx, cy, r * rng.uniform(1, 2.5), r, soft=0.5)
            _blend(self.canvas[sl], mask, (1.0, 1.0, 1.0), 1.0)


# ---- label signatures --------------------------------------------------------------------
def _draw_dyed(s: _Scene) -> None:
    """Indigo carmine: patchy blue tint over much of the mucosa."""
    field = 0.5 * _noise(s.rng, s.h, s.w, 3) + s.rng.uniform(0.7, 1.0)
    _blend(s.canvas, np.clip(field, 0, 1), (0.22, 0.38, 0.62), s.rng.uniform(0.6, 0.8))


def _draw_polyp(s: _Scene, lifted: bool = False) -> None:
    """A raised pink dome with shading, a rim shadow and a pit-pattern texture (boxed)."""
    rng = s.rng
    r = s.size * rng.uniform(0.09, 0.17)
    cx = s.cx + rng.uniform(-0.1, 0.1) * s.w
    cy = s.cy + rng.uniform(-0.08, 0.08) * s.h
    rx, ry = r * rng.uniform(0.85, 1.25), r * rng.uniform(0.8, 1.1)
    if lifted:  # the blue submucosal cushion the polyp sits on
        sl, cush, nx, ny = s.blob(cx, cy + 0.3 * ry, 2.0 * rx, 1.6 * ry, lobes=0.06, soft=0.4)
        _blend(s.canvas[sl], cush, (0.50, 0.62, 0.86), 0.9)
        _blend(s.canvas[sl], cush * np.clip(0.5 * (nx + ny), 0, 1), (0.15, 0.22, 0.45), 0.5)
    sl, shadow, _, _ = s.blob(cx + 0.08 * rx, cy + 0.15 * ry, 1.1 * rx, 1.1 * ry, soft=0.4)
    _blend(s.canvas[sl], shadow, (0.30, 0.08, 0.07), 0.55)
    sl, mask, nx, ny = s.blob(cx, cy, rx, ry)
    tone = np.asarray(rng.uniform([0.90, 0.52, 0.48], [0.98, 0.66, 0.60]), dtype=np.float32)
    light = 1.05 - 0.35 * np.clip(0.6 * nx + 0.8 * ny, -1, 1)  # lit from the top-left
    pits = 0.06 * _noise(rng, mask.shape[0], mask.shape[1], max(4, mask.shape[1] // 3))
    dome = np.clip(tone[None, None, :] * (light + pits)[..., None], 0, 1)
    a = mask[..., None]
    window = s.canvas[sl]
    window[:] = window * (1 - a) + dome * a
    gsl, glint, _, _ = s.blob(cx - 0.35 * rx, cy - 0.4 * ry, 0.18 * rx, 0.1 * ry, soft=0.6)
    _blend(s.canvas[gsl], glint, (1, 1, 1), 1.0)
    box = _box_of(mask)
    if box is not None:
        box[0] += sl[1].start
        box[1] += sl[0].start
        s.boxes.append(("polyp", box))


def _draw_resection_margin(s: _Scene) -> None:
    """Dyed site after polypectomy: dark-blue rimmed pale wound with red spots (boxed)."""
    rng = s.rng
    r = s.size * rng.uniform(0.13, 0.2)
    rx, ry = r * rng.uniform(1.0, 1.5), r * rng.uniform(0.6, 0.9)
    sl, rim, _, _ = s.blob(s.cx, s.cy, 1.2 * rx, 1.25 * ry, lobes=0.15, soft=0.2)
    _blend(s.canvas[sl], rim, (0.10, 0.20, 0.50), 0.95)
    wsl, wound, _, _ = s.blob(s.cx, s.cy, rx, ry, lobes=0.15, soft=0.25)
    _blend(s.canvas[wsl], wound, (0.93, 0.86, 0.80), 0.95)
    spots = np.clip(_noise(rng, wound.shape[0], wound.shape[1], max(4, wound.shape[1] // 8)) * 2.0 - 1.2, 0, 1)
    _blend(s.canvas[wsl], spots * wound, (0.75, 0.15, 0.15), 0.8)
    box = _box_of(rim)
    if box is not None:
        box[0] += sl[1].start
        box[1] += sl[0].start
        s.boxes.append(("resection-margin", box))


def _zline_radius(s: _Scene) -> tuple[np.ndarray, np.ndarray]:
    theta = np.arctan2(s.yy - s.cy, s.xx - s.cx)
    if not hasattr(s, "_zline"):
        r0 = s.size * s.rng.uniform(0.2, 0.28)
        k, p1, p2 = s.rng.integers(3, 6), *s.rng.uniform(0, 2 * math.pi, 2)
        s._zline = (r0, k, p1, p2)
    r0, k, p1, p2 = s._zline
    # A few broad tongues of red mucosa plus a finer ripple: wavy, not star-shaped.
    radius = r0 * (1 + 0.13 * np.sin(k * theta + p1) + 0.06 * np.sin(3 * k * theta + p2))
    return radius, theta


def _draw_z_line(s: _Scene) -> None:
    """Wavy ring: red columnar mucosa inside, pale squamous mucosa outside, dark lumen centre."""
    radius, _ = _zline_radius(s)
    d = np.hypot(s.xx - s.cx, s.yy - s.cy)
    squamous = np.clip((d - radius) / (0.03 * s.size), 0, 1)
    _blend(s.canvas, squamous, (0.95, 0.84, 0.82), 0.8)
    _blend(s.canvas, 1 - squamous, (0.80, 0.25, 0.22), 0.55)
    lumen = np.exp(-(d / (0.09 * s.size)) ** 2)
    _blend(s.canvas, lumen, (0.18, 0.05, 0.06), 0.9)


def _draw_esophagitis(s: _Scene) -> None:
    """Red linear erosions running outward from the z-line over the pale mucosa."""
    rng = s.rng
    r0 = _zline_radius(s)[0] if hasattr(s, "_zline") else s.size * 0.24
    base = float(np.median(r0))
    streaks = []
    for a in rng.uniform(0, 2 * math.pi, rng.integers(4, 8)):
        r1, r2 = base * rng.uniform(0.9, 1.05), base * rng.uniform(1.35, 1.8)
        bend = rng.normal(0, 0.08)
        streaks.append([(s.cx + r * math.cos(a + bend * t), s.cy + r * math.sin(a + bend * t))
                        for t, r in enumerate(np.linspace(r1, r2, 4))])
    _blend_lines(s.canvas, streaks, max(3, int(s.size * 0.03)), (0.80, 0.10, 0.10), 0.85)
    # Whitish exudate at some erosion tips.
    for pts in streaks[: rng.integers(1, 3)]:
        x, y = pts[-1]
        sl, spot, _, _ = s.blob(x, y, 0.015 * s.size, 0.015 * s.size, soft=0.5)
        _blend(s.canvas[sl], spot, (0.96, 0.93, 0.85), 0.9)


def _draw_cecum(s: _Scene) -> None:
    """Tri-radiate fold (three ridges meeting) and the slit-like appendiceal orifice."""
    rng = s.rng
    a0 = rng.uniform(0, 2 * math.pi)
    ridges = []
    for k in range(3):
        a = a0 + k * 2 * math.pi / 3 + rng.normal(0, 0.15)
        bend = rng.normal(0, 0.3)
        ridges.append([(s.cx + t * s.size * 0.35 * math.cos(a + bend * t), s.cy + t * s.size * 0.35 * math.sin(a + bend * t)) for t in np.linspace(0, 1, 8)])
    width = max(3, int(s.size * 0.03))
    shadow = [[(x + width, y + width) for x, y in pts] for pts in ridges]
    _blend_lines(s.canvas, shadow, width, (0.35, 0.10, 0.08), 0.6)
    _blend_lines(s.canvas, ridges, width, (0.98, 0.70, 0.55), 0.6)
    ox, oy = s.cx + rng.uniform(-0.05, 0.05) * s.size, s.cy + rng.uniform(0.06, 0.1) * s.size
    sl, slit, _, _ = s.blob(ox, oy, 0.07 * s.size, 0.025 * s.size, lobes=0.05, soft=0.5)
    _blend(s.canvas[sl], slit, (0.22, 0.06, 0.05), 0.9)


def _draw_pylorus(s: _Scene) -> None:
    """Dark round central opening with radial folds converging on it."""
    rng = s.rng
    r = s.size * rng.uniform(0.05, 0.09)
    folds = []
    for a in np.linspace(0, 2 * math.pi, rng.integers(8, 14), endpoint=False):
        a += rng.normal(0, 0.12)
        folds.append([(s.cx + t * math.cos(a), s.cy + t * math.sin(a)) for t in (1.1 * r, 2.6 * r, 3.8 * r)])
    _blend_lines(s.canvas, folds, max(2, int(r * 0.35)), (0.55, 0.22, 0.22), 0.45)
    sl, hole, _, _ = s.blob(s.cx, s.cy, r, r * rng.uniform(0.85, 1.1), lobes=0.06, soft=0.35)
    _blend(s.canvas[sl], hole, (0.10, 0.03, 0.04), 0.95)


def _draw_ulcerative_colitis(s: _Scene) -> None:
    """Granular, friable red mucosa (no vessel pattern) with white fibrin spots."""
    rng = s.rng
    grain = np.clip(_noise(rng, s.h, s.w, s.w // 3) * 0.5 + 0.5, 0, 1)
    _blend(s.canvas, grain, (0.85, 0.18, 0.16), 0.55)
    for _ in range(rng.integers(8, 22)):
        x, y = rng.uniform(0.12, 0.9) * s.w, rng.uniform(0.08, 0.62) * s.h
        r = s.size * rng.uniform(0.008, 0.02)
        sl, spot, _, _ = s.blob(x, y, r * rng.uniform(1, 2), r, soft=0.5)
        _blend(s.canvas[sl], spot, (0.97, 0.95, 0.85), 0.95)


_FEATURES: dict[str, Callable[[_Scene], None]] = {
    "dyed": _draw_dyed,
    "z-line": _draw_z_line,
    "esophagitis": _draw_esophagitis,
    "cecum": _draw_cecum,
    "pylorus": _draw_pylorus,
    "ulcerative-colitis": _draw_ulcerative_colitis,
    "resection-margin": _draw_resection_margin,
    "polyp": _draw_polyp,
}
# "lifted" is drawn by _draw_polyp (the blue cushion under the polyp).
_SIGNATURES = frozenset(_FEATURES) | {"lifted"}
# Drawing order: background changes first, raised things last. Colitis and dye come after the
# z-line (whose pale squamous blend would otherwise paint over them on upper-GI frames, which
# cooccurrence="independent" makes); in the default mode they never share a frame with it, so
# its frames are unchanged by that choice.
_ORDER = ("z-line", "esophagitis", "ulcerative-colitis", "dyed", "cecum", "pylorus", "resection-margin", "polyp")


# ---- frame: border, burnt-in text, inset -------------------------------------------------
def _frame_mask(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, int]:
    """Visible-area mask (octagon or rounded rectangle) and the left border width in px."""
    left = int(w * rng.uniform(0.03, 0.1))
    right = w - int(w * rng.uniform(0.0, 0.04))
    top, bottom = int(h * rng.uniform(0.0, 0.03)), h - int(h * rng.uniform(0.0, 0.03))
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    cut = int(min(w, h) * rng.uniform(0.1, 0.2))
    if rng.random() < 0.7:
        draw.polygon(
            [(left + cut, top), (right - cut, top), (right, top + cut), (right, bottom - cut),
             (right - cut, bottom), (left + cut, bottom), (left, bottom - cut), (left, top + cut)],
            fill=255,
        )
    else:
        draw.rounded_rectangle([left, top, right, bottom], radius=int(cut * 1.3), fill=255)
    return np.asarray(img) > 127, left


def _burn_text(img: Image.Image, rng: np.random.Generator) -> None:
    """White patient/scope text on the upper left, like the real frames (PIL default font)."""
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    day, month, year = rng.integers(1, 29), rng.integers(1, 13), rng.integers(2010, 2018)
    hh, mm, ss = rng.integers(0, 24), rng.integers(0, 60), rng.integers(0, 60)
    lines = ["ID:", "Name:", "Sex:  Age:", f"{day:02d}/{month:02d}/{year}", f"{hh:02d}:{mm:02d}:{ss:02d}",
             f"CVP:{rng.integers(1, 15)}", "Cr:N"]
    y = int(img.height * rng.uniform(0.03, 0.08))
    step = max(9, int(img.height * 0.045))
    for line in lines[: rng.integers(4, len(lines) + 1)]:
        draw.text((2, y), line, fill=(235, 235, 235), font=font)
        y += step


def _inset_state(rng: np.random.Generator, upper: bool) -> str:
    if upper:
        return "none"
    return str(rng.choice(("green", "black", "none"), p=LOWER_GI_INSET_P))


def _draw_inset(img: Image.Image, rng: np.random.Generator, state: str) -> list[float] | None:
    """Draw the ScopeGuide panel (green) or its blacked-out rectangle; return its xywh box."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    if state == "green":
        x0, y0 = int(w * rng.uniform(0.03, 0.07)), int(h * rng.uniform(0.64, 0.7))
        x1, y1 = x0 + int(w * rng.uniform(0.25, 0.3)), min(h, y0 + int(h * rng.uniform(0.27, 0.31)))
        jitter = rng.integers(-6, 7, 3)
        colour = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(PANEL_RGB, jitter))
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=colour)
        # The scope's shape: a dark loop drawn from the panel's bottom edge.
        cx, cy = (x0 + x1) / 2, y1 - 2
        pts = _random_walk(rng, cx + rng.uniform(-5, 5), cy, 10, (y1 - y0) * 0.09, -math.pi / 2, 0.45)
        pts = [(min(max(px, x0 + 3), x1 - 4), min(max(py, y0 + 3), y1 - 3)) for px, py in pts]
        draw.line(pts, fill=(20, 30, 30), width=2, joint="curve")
        return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
    if state == "black":
        # As in Kvasir-SEG: from the left edge (merging with the border) down to the bottom.
        x1, y0 = int(w * rng.uniform(0.26, 0.36)), int(h * rng.uniform(0.6, 0.7))
        draw.rectangle([0, y0, x1 - 1, h - 1], fill=(0, 0, 0))
        return [0.0, float(y0), float(x1), float(h - y0)]
    return None


# ---- one frame ---------------------------------------------------------------------------
def _frame_labels(rng: np.random.Generator, taxonomy: Taxonomy, cls: str, cooccurrence: str = "default") -> list[str]:
    """The class's label set plus, per ``cooccurrence``, extra findings (in vocabulary order)."""
    labels = set(taxonomy.labels_for(SOURCE, cls))
    if cooccurrence == "default":
        for extra_cls, extra_label, p in EXTRA_FINDINGS:
            if extra_cls == cls and rng.random() < p:
                labels.add(extra_label)
    elif cooccurrence == "independent":
        for finding in INDEPENDENT_FINDINGS:  # one draw per finding and frame, whatever the class
            if rng.random() < INDEPENDENT_P:
                labels.add(finding)
    return [name for name in taxonomy.label_names if name in labels]


def render_frame(rng: np.random.Generator, upper: bool, labels: list[str], size_px: tuple[int, int],
                 finding_contrast: float = DEFAULT_FINDING_CONTRAST,
                 ) -> tuple[Image.Image, str, list[float] | None, list[tuple[str, list[float]]]]:
    """Draw one frame.

    Args:
        rng: the frame's own generator (the frame depends on nothing else).
        upper: an upper-GI frame (the class's labels lie there: ``Taxonomy.class_region``).
        labels: labels to draw (each must have a signature in ``_FEATURES``).
        size_px: ``(width, height)``.
        finding_contrast: in (0, 1]; the drawn signatures (vessels, findings) are blended with
            the bare mucosa at this weight (boxes stay where the findings are).

    Returns:
        ``(image, inset_state, inset_box_xywh_px, boxes)`` with boxes ``[(box_class, xywh_px)]``.
    """
    w, h = size_px
    scene = _Scene(rng, w, h, upper)
    mucosa = scene.canvas.copy() if finding_contrast < 1.0 else None
    if "ulcerative-colitis" not in labels:
        scene.vessels()
    central = [name for name in ("cecum", "pylorus", "resection-margin", "z-line") if name in labels]
    for name in _ORDER:
        if name not in labels:
            continue
        if name == "polyp" and central:
            # A polyp next to another central finding: move it aside so both stay visible.
            scene.cx += scene.w * rng.choice((-0.22, 0.22))
            scene.cy += scene.h * rng.uniform(-0.05, 0.1)
        if name == "polyp":
            _draw_polyp(scene, lifted="lifted" in labels)
        else:
            _FEATURES[name](scene)
    if mucosa is not None:  # fade the signatures: mucosa + c * (drawn - mucosa)
        scene.canvas = mucosa + np.float32(finding_contrast) * (scene.canvas - mucosa)
    scene.speculars()
    visible, _ = _frame_mask(rng, w, h)
    pixels = np.clip(scene.canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    pixels[~visible] = 0
    img = Image.fromarray(pixels, mode="RGB")
    _burn_text(img, rng)
    state = _inset_state(rng, upper)
    inset_box = _draw_inset(img, rng, state)
    return img, state, inset_box, scene.boxes


def _frame_size(rng: np.random.Generator, size_range_px: tuple[int, int]) -> tuple[int, int]:
    lo, hi = size_range_px
    w = int(rng.integers(lo, hi + 1))
    return w, int(round(w * rng.uniform(0.82, 0.9)))


# ---- the dataset -------------------------------------------------------------------------
def synthesize(
    out_dir: str | Path,
    n: int,
    seed: int,
    size_range_px: tuple[int, int] = (256, 320),
    overwrite: bool = False,
    taxonomy: Taxonomy | None = None,
    cooccurrence: str = "default",
    finding_contrast: float = DEFAULT_FINDING_CONTRAST,
) -> Path:
    """Write ``n`` synthetic Kvasir-like frames and their canonical annotation file.

    Classes cycle through the 8 source classes (balanced); labels, boxes and the inset are
    drawn per frame from ``default_rng([seed, i])``.

    Args:
        out_dir: output folder; gets ``images/synth-<seed>-<i>.jpg`` and ``annotations.coco.json``.
        n: number of frames (>= 1).
        seed: random seed; the same seed gives byte-identical output on the same kind of CPU
            (numpy's CPU-specific math kernels, e.g. sin and exp, can differ in the last bit between
            CPU types, which can move a few pixels and so the JPEG bytes: the images' hashes differed
            between an Intel AVX-512 and an AMD EPYC box).
        size_range_px: inclusive range of frame widths; heights are 0.82-0.9 of the width.
        overwrite: allow writing into a folder that already holds an annotation file (the
            old file is kept as a timestamped backup).
        taxonomy: defaults to ``load_taxonomy()``.
        cooccurrence: ``default`` | ``independent`` | ``none`` (see the module docstring).
        finding_contrast: in (0, 1]: how visible the findings are (``render_frame``).

    Returns:
        Path of ``out_dir/annotations.coco.json``.

    Raises:
        SynthError: bad n / size range, or an existing annotation file without ``overwrite``.
    """
    out_dir = Path(out_dir)
    lo, hi = size_range_px
    if n < 1:
        raise SynthError(f"synthesize {out_dir}: n must be >= 1, got {n}")
    if not 64 <= lo <= hi:
        raise SynthError(f"synthesize {out_dir}: size_range_px must satisfy 64 <= lo <= hi, got {size_range_px}")
    if cooccurrence not in COOCCURRENCE_MODES:
        raise SynthError(f"synthesize {out_dir}: cooccurrence must be one of {COOCCURRENCE_MODES}, got {cooccurrence!r}")
    if not 0.0 < finding_contrast <= 1.0:
        raise SynthError(f"synthesize {out_dir}: finding_contrast must be in (0, 1], got {finding_contrast}")
    ann_path = out_dir / ANNOTATIONS_NAME
    params = {"generator_version": GENERATOR_VERSION, "seed": int(seed), "n": int(n), "size_range_px": [lo, hi]}
    if cooccurrence != "default":  # absent for the default, so folders written before the option still match
        params["cooccurrence"] = cooccurrence
    if finding_contrast != DEFAULT_FINDING_CONTRAST:  # likewise
        params["finding_contrast"] = float(finding_contrast)
    if ann_path.exists() and not overwrite:
        if _is_same_dataset(out_dir, params):
            return ann_path  # the same call ran before (e.g. a resumed run): the bytes would be identical
        raise SynthError(
            f"synthesize {out_dir}: {ann_path} exists with other contents; pass overwrite=True to replace it "
            "(a backup is kept)"
        )
    taxonomy = taxonomy or load_taxonomy()
    classes = taxonomy.source(SOURCE).classes
    missing = {lab for c in classes for lab in taxonomy.labels_for(SOURCE, c)} - _SIGNATURES
    if missing:
        raise SynthError(f"synthesize: no visual signature for labels {sorted(missing)}")
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    ds = CanonicalDataset.new(SOURCE, f"synthetic Kvasir-like frames (seed={seed}, n={n})", taxonomy)
    ds.info.update({"date_created": _FIXED_DATE, **params})
    upper = {c: taxonomy.class_region(SOURCE, c) == "upper" for c in classes}  # from the labels' regions
    for i in range(n):
        rng = np.random.default_rng([int(seed), i])
        cls = classes[i % len(classes)]
        labels = _frame_labels(rng, taxonomy, cls, cooccurrence)
        size = _frame_size(rng, (lo, hi))
        img, state, inset_box, boxes = render_frame(rng, upper[cls], labels, size, finding_contrast)
        rel = f"images/synth-{seed}-{i:05d}.jpg"
        # No EXIF/timestamps: PIL's JPEG bytes depend only on the pixels and settings.
        img.save(out_dir / rel, format="JPEG", quality=JPEG_QUALITY)
        image_id = ds.add_image(rel, size[0], size[1], labels, SOURCE, cls, inset=state, inset_box=inset_box,
                                content_sha256=sha256_file(out_dir / rel))
        for box_class, box in boxes:
            ds.add_box(image_id, box_class, box)
    ds.save(ann_path)
    return ann_path


def _is_same_dataset(out_dir: Path, params: dict) -> bool:
    """True if ``out_dir`` already holds the complete output of a call with these parameters."""
    try:
        ds = load_canonical(out_dir / ANNOTATIONS_NAME)
    except (ValueError, OSError):  # CanonicalError is a ValueError
        return False
    optional = ("cooccurrence", "finding_contrast")  # recorded only when not the default
    if any(ds.info.get(key) != value for key, value in params.items()) or any(
            ds.info.get(key) != params.get(key) for key in optional):
        return False
    return all((out_dir / img["file_name"]).is_file() for img in ds.images)
