"""Synthetic endoscopy videos with per-frame ground truth (tests, docs, benchmarks).

A video is a scope moving over a *world*: one large picture with boxed objects. The
synthetic world is drawn with the still-frame generator's scene code
(``kvasir_ml.data.synth``: colon mucosa, vessels, folds, polyps); ``strip_world`` makes a
world from real frames laid side by side (the "pan-and-zoom" video, their boxes moved
along). A camera path pans across the world and zooms in and out, so polyps enter and
leave the view; frames get motion blur when the scope moves fast, random specular flashes
(over-exposure), the scope's fixed border mask and burnt-in text, and the position-map
inset, whose state (green panel, blacked-out rectangle, none) changes a few times.

Ground truth per frame: ``labels`` (``polyp`` while a polyp box is in view), ``boxes``
(object id, class, frame pixels, visible fraction), ``inset`` (state, box), ``blur_px``,
``flash``, and the camera window. An object counts as in view when at least
``VISIBLE_FRACTION`` of its world box lies inside the frame.

Determinism: everything is drawn from ``numpy.random.default_rng([seed, stream])``, so a
seed gives the same frames and the same ground-truth JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from kvasir_ml.data import synth as still
from kvasir_ml.io import atomic_write_json
from kvasir_ml.taxonomy import INSET_STATES

GENERATOR_VERSION = 1
VIDEO_NAME = "video.mp4"
TRUTH_NAME = "ground_truth.json"
# An object is "in view" (labelled and boxed) when this much of its box is inside the frame.
VISIBLE_FRACTION = 0.5
# World size relative to the frame: wide enough that a pan shows objects entering and leaving.
WORLD_SCALE_W, WORLD_SCALE_H = 3.2, 1.35
# Zoom range: 1 = the crop is the frame size; 1.35 = closer (a smaller window, magnified).
ZOOM_MAX = 1.35
# Pan speed (world px per frame) above which the frame is motion-blurred.
BLUR_SPEED_PX = 6.0
# Random extra blur (defocus) and flash probabilities per frame.
DEFOCUS_P, FLASH_P = 0.04, 0.04
# The stream numbers of default_rng([seed, stream]): each random part draws from its own stream.
_WORLD, _PATH, _EFFECTS, _OVERLAY, _INSET = 0, 1, 2, 3, 4


class VideoSynthError(ValueError):
    """Bad arguments to the video generator."""


@dataclass
class World:
    """A picture the camera moves over: pixels (HxWx3 uint8) and boxed objects
    ``{"id": int, "class": str, "xywh_px": [x, y, w, h]}`` in world pixels."""

    pixels: np.ndarray
    objects: list[dict[str, Any]] = field(default_factory=list)


def synthetic_world(seed: int, frame_size_px: tuple[int, int], n_polyps: int = 2) -> World:
    """The still generator's colon scene, drawn at world size, with ``n_polyps`` polyps spread along it.

    Args:
        seed: random seed (stream ``[seed, 0]``).
        frame_size_px: ``(width, height)`` of the video frames; the world is larger.
        n_polyps: polyps drawn (ids 1..n, left to right).
    """
    rng = np.random.default_rng([int(seed), _WORLD])
    w, h = int(frame_size_px[0] * WORLD_SCALE_W), int(frame_size_px[1] * WORLD_SCALE_H)
    scene = still._Scene(rng, w, h, upper=False)
    scene.vessels()
    objects = []
    # Spread along x with gaps of plain mucosa between them (and before the first one).
    for k, fx in enumerate(np.linspace(0.42, 0.78, n_polyps) if n_polyps > 1 else [0.6][:n_polyps]):
        scene.cx, scene.cy = w * fx, h * rng.uniform(0.4, 0.6)
        before = len(scene.boxes)
        # The still generator's polyp radius is a fraction of the scene's short side; at world
        # size that is the frame's height * WORLD_SCALE_H, a polyp a fifth of the frame or so.
        still._draw_polyp(scene)
        if len(scene.boxes) > before:
            objects.append({"id": k + 1, "class": "polyp", "xywh_px": [round(v, 2) for v in scene.boxes[-1][1]]})
    scene.speculars()
    pixels = np.clip(scene.canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return World(pixels, objects)


def strip_world(frames: Sequence[np.ndarray], boxes: Sequence[Sequence[dict[str, Any]]], height_px: int) -> World:
    """Real frames resized to one height and laid side by side; their boxes moved along.

    Args:
        frames: HxWx3 uint8 RGB images.
        boxes: per frame, ``{"class", "xywh_px"}`` in that frame's pixels.
        height_px: the strip's height.

    Raises:
        VideoSynthError: no frames, or the box lists do not match the frames.
    """
    if not frames or len(frames) != len(boxes):
        raise VideoSynthError(f"strip_world: {len(frames)} frames and {len(boxes)} box lists (need >= 1, equal)")
    parts, x_off = [], 0
    objects: list[dict[str, Any]] = []
    for rgb, frame_boxes in zip(frames, boxes):
        s = height_px / rgb.shape[0]
        w = max(1, int(round(rgb.shape[1] * s)))
        parts.append(np.asarray(Image.fromarray(rgb).resize((w, height_px), Image.Resampling.BILINEAR)))
        for b in frame_boxes:
            x, y, bw, bh = b["xywh_px"]
            objects.append({"id": len(objects) + 1, "class": b["class"],
                            "xywh_px": [round(x * s + x_off, 2), round(y * s, 2), round(bw * s, 2), round(bh * s, 2)]})
        x_off += w
    return World(np.concatenate(parts, axis=1), objects)


def canonical_world(canonical: Any, root: str | Path, n_images: int, height_px: int) -> World:
    """A strip of the first ``n_images`` images with boxes of a canonical dataset (e.g.
    Kvasir-SEG frames indexed by ``data index``): the pan-and-zoom video of real frames.

    Args:
        canonical: a ``CanonicalDataset``.
        root: the folder its ``file_name``s are relative to.
        n_images: how many images (those with at least one box, in file order).
        height_px: the strip's height.

    Raises:
        VideoSynthError: the dataset has no image with a box.
    """
    from kvasir_ml.data.images import load_rgb

    cats = {c["id"]: c["name"] for c in canonical.categories}
    by_image = canonical.boxes_by_image()
    chosen = [img for img in canonical.images if by_image.get(img["id"])][:n_images]
    if not chosen:
        raise VideoSynthError("canonical_world: the dataset has no image with a box")
    frames = [load_rgb(Path(root) / img["file_name"]) for img in chosen]
    boxes = [[{"class": cats[a["category_id"]], "xywh_px": a["bbox"]} for a in by_image[img["id"]]] for img in chosen]
    return strip_world(frames, boxes, height_px)


@dataclass(frozen=True)
class Camera:
    """The world window a frame shows: top-left ``(x0, y0)`` and size, in world pixels."""

    x0: float
    y0: float
    w: float
    h: float

    def to_frame(self, box_xywh: Sequence[float], frame_w: int, frame_h: int) -> tuple[list[float], float]:
        """A world box in frame pixels, clipped, and the fraction of it inside the frame."""
        sx, sy = frame_w / self.w, frame_h / self.h
        x, y, w, h = box_xywh
        fx0, fy0, fx1, fy1 = (x - self.x0) * sx, (y - self.y0) * sy, (x + w - self.x0) * sx, (y + h - self.y0) * sy
        cx0, cy0 = min(max(fx0, 0.0), frame_w), min(max(fy0, 0.0), frame_h)
        cx1, cy1 = min(max(fx1, 0.0), frame_w), min(max(fy1, 0.0), frame_h)
        area = max(1e-9, (fx1 - fx0) * (fy1 - fy0))
        inside = max(0.0, cx1 - cx0) * max(0.0, cy1 - cy0) / area
        return [round(cx0, 2), round(cy0, 2), round(cx1 - cx0, 2), round(cy1 - cy0, 2)], inside


def camera_path(seed: int, n_frames: int, world_hw: tuple[int, int], frame_size_px: tuple[int, int]) -> list[Camera]:
    """A pan from the world's left end to its right end (eased, with hand shake and a pause
    or two) while the zoom breathes between 1 and ``ZOOM_MAX``."""
    rng = np.random.default_rng([int(seed), _PATH])
    wh, ww = world_hw
    fw, fh = frame_size_px
    fw, fh = min(fw, ww), min(fh, wh)  # a world smaller than a frame is magnified
    t = np.linspace(0.0, 1.0, n_frames)
    # Progress along the pan: smooth ease with two plateaus where the scope lingers.
    pauses = np.sort(rng.uniform(0.2, 0.8, 2))
    progress = t + sum(0.06 * np.sin(np.clip((t - p) / 0.12, 0, 1) * math.pi) for p in pauses)
    progress = (progress - progress.min()) / max(1e-9, np.ptp(progress))
    progress = np.maximum.accumulate(progress)
    zoom = 1.0 + (ZOOM_MAX - 1.0) * 0.5 * (1 - np.cos(2 * math.pi * t * rng.uniform(1.0, 2.0)))
    shake_x = np.cumsum(rng.normal(0, 1.0, n_frames))
    shake_y = np.cumsum(rng.normal(0, 0.8, n_frames))
    cams = []
    for i in range(n_frames):
        cw, ch = fw / zoom[i], fh / zoom[i]
        cx = cw / 2 + progress[i] * (ww - cw) + shake_x[i]
        cy = wh / 2 + shake_y[i]
        x0 = float(np.clip(cx - cw / 2, 0, ww - cw))
        y0 = float(np.clip(cy - ch / 2, 0, wh - ch))
        cams.append(Camera(x0, y0, float(cw), float(ch)))
    return cams


def inset_schedule(seed: int, n_frames: int, n_changes: int = 2) -> list[str]:
    """The inset state of each frame: ``n_changes`` changes at random frames, each to another state."""
    rng = np.random.default_rng([int(seed), _INSET])
    cuts = sorted(int(c) for c in rng.choice(np.arange(1, max(2, n_frames)), size=min(n_changes, max(0, n_frames - 1)),
                                             replace=False)) if n_frames > 1 else []
    state = str(rng.choice(INSET_STATES))
    states, bounds = [], [0, *cuts, n_frames]
    for a, b in zip(bounds, bounds[1:]):
        states += [state] * (b - a)
        state = str(rng.choice([s for s in INSET_STATES if s != state]))
    return states


def _warp(world: np.ndarray, cam: Camera, frame_w: int, frame_h: int) -> np.ndarray:
    import cv2

    sx, sy = frame_w / cam.w, frame_h / cam.h
    m = np.array([[sx, 0, -cam.x0 * sx], [0, sy, -cam.y0 * sy]], dtype=np.float64)
    return cv2.warpAffine(world, m, (frame_w, frame_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _motion_blur(rgb: np.ndarray, length_px: int, angle_rad: float) -> np.ndarray:
    import cv2

    k = np.zeros((length_px, length_px), np.float32)
    c = (length_px - 1) / 2
    dx, dy = math.cos(angle_rad) * c, math.sin(angle_rad) * c
    cv2.line(k, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
    return cv2.filter2D(rgb, -1, k / max(k.sum(), 1e-6))


def _flash(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Over-exposure: a large soft white glare somewhere in the frame."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(0.15, 0.35) * min(w, h)
    a = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(0.7, 0.95)
    return np.clip(rgb * (1 - a) + 255.0 * a, 0, 255).astype(np.uint8)


def render_frames(world: World, seed: int, n_frames: int, fps: float, frame_size_px: tuple[int, int],
                  inset_changes: int = 2) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Frames of the scope moving over ``world``, one at a time: ``(rgb HxWx3 uint8, truth)``.

    Args:
        world: from ``synthetic_world`` or ``strip_world``.
        seed: random seed of the path, the effects and the overlays.
        n_frames, fps: length and rate.
        frame_size_px: ``(width, height)``.
        inset_changes: how often the inset changes state.
    """
    fw, fh = frame_size_px
    cams = camera_path(seed, n_frames, world.pixels.shape[:2], frame_size_px)
    states = inset_schedule(seed, n_frames, inset_changes)
    effects = np.random.default_rng([int(seed), _EFFECTS])
    visible, _ = still._frame_mask(np.random.default_rng([int(seed), _OVERLAY]), fw, fh)
    segment = 0
    for i, cam in enumerate(cams):
        rgb = _warp(world.pixels, cam, fw, fh)
        prev = cams[i - 1] if i else cam
        speed = math.hypot(cam.x0 - prev.x0, cam.y0 - prev.y0) * fw / cam.w
        blur_px = int(round(speed * 1.5)) if speed > BLUR_SPEED_PX else 0
        angle = math.atan2(cam.y0 - prev.y0, cam.x0 - prev.x0)
        if effects.random() < DEFOCUS_P:
            blur_px, angle = max(blur_px, int(effects.integers(7, 15))), float(effects.uniform(0, math.pi))
        if blur_px >= 3:
            rgb = _motion_blur(rgb, blur_px | 1, angle)
        flash = bool(effects.random() < FLASH_P)
        if flash:
            rgb = _flash(rgb, effects)
        rgb[~visible] = 0
        img = Image.fromarray(rgb)
        still._burn_text(img, np.random.default_rng([int(seed), _OVERLAY]))  # the same text on every frame
        if i and states[i] != states[i - 1]:
            segment += 1
        # One panel per segment: the same inset (position, scope loop) until the state changes.
        inset_box = still._draw_inset(img, np.random.default_rng([int(seed), _INSET, segment]), states[i])
        boxes, labels = [], set()
        for obj in world.objects:
            box, inside = cam.to_frame(obj["xywh_px"], fw, fh)
            if inside >= VISIBLE_FRACTION:
                boxes.append({"id": obj["id"], "class": obj["class"], "xywh_px": box,
                              "visible_fraction": round(inside, 3)})
                labels.add(obj["class"])
        truth = {"index": i, "time_s": round(i / fps, 4), "labels": sorted(labels), "boxes": boxes,
                 "inset": {"state": states[i], "box_xywh_px": inset_box}, "blur_px": blur_px, "flash": flash,
                 "camera_xywh_px": [round(cam.x0, 2), round(cam.y0, 2), round(cam.w, 2), round(cam.h, 2)]}
        yield np.asarray(img), truth


def write_video(frames: Iterator[np.ndarray], path: str | Path, fps: float, frame_size_px: tuple[int, int]) -> int:
    """Encode RGB frames to an MP4 (OpenCV's ``mp4v``), streaming; returns the frame count."""
    from kvasir_ml.video.io import VideoWriter

    n = 0
    with VideoWriter(path, fps, frame_size_px) as writer:
        for rgb in frames:
            writer.write(rgb)
            n += 1
    return n


def synthesize_video(out_dir: str | Path, seed: int = 0, n_frames: int = 150, fps: float = 15.0,
                     frame_size_px: tuple[int, int] = (256, 224), n_polyps: int = 2, inset_changes: int = 2,
                     world: World | None = None) -> Path:
    """Write ``video.mp4`` and ``ground_truth.json`` into ``out_dir``.

    Args:
        out_dir: output folder (created).
        seed: the same seed gives the same frames and ground truth.
        n_frames, fps: length (>= 2) and rate (> 0).
        frame_size_px: ``(width, height)``, each >= 64 and even (video codecs want even sizes).
        n_polyps: polyps in the synthetic world (ignored when ``world`` is given).
        inset_changes: how often the inset changes state.
        world: a world to film instead of the synthetic one (``strip_world`` of real frames).

    Returns:
        Path of the ground-truth JSON: ``{generator_version, seed, fps, width, height, n_frames,
        objects, frames: [...]}`` with ``frames`` as yielded by ``render_frames``.

    Raises:
        VideoSynthError: bad arguments.
    """
    fw, fh = (int(v) for v in frame_size_px)
    if n_frames < 2 or fps <= 0:
        raise VideoSynthError(f"synthesize_video {out_dir}: need n_frames >= 2 and fps > 0, got {n_frames}, {fps}")
    if min(fw, fh) < 64 or fw % 2 or fh % 2:
        raise VideoSynthError(f"synthesize_video {out_dir}: frame size must be even and >= 64 px, got {frame_size_px}")
    if not 0 <= n_polyps <= 6:
        raise VideoSynthError(f"synthesize_video {out_dir}: n_polyps must be in 0..6, got {n_polyps}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = world or synthetic_world(seed, (fw, fh), n_polyps)
    truths: list[dict[str, Any]] = []

    def frames() -> Iterator[np.ndarray]:
        for rgb, truth in render_frames(world, seed, n_frames, fps, (fw, fh), inset_changes):
            truths.append(truth)  # small dicts; the pixels stream straight into the encoder
            yield rgb

    write_video(frames(), out / VIDEO_NAME, fps, (fw, fh))
    truth_path = out / TRUTH_NAME
    atomic_write_json(truth_path, {
        "generator_version": GENERATOR_VERSION, "seed": int(seed), "fps": float(fps), "width": fw, "height": fh,
        "n_frames": int(n_frames), "visible_fraction": VISIBLE_FRACTION, "objects": world.objects, "frames": truths,
    }, indent=None)
    return truth_path
