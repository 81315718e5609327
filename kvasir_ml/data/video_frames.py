"""Synthetic 720x576 endoscopy-like JPEG frames with near-duplicate runs, for scale benchmarks.

HyperKvasir and Kvasir v2 were cut from videos: many frames are a few frames apart and
nearly identical. ``write_video_frames`` makes a Kvasir v2-style folder (``ROOT/<class>/*.jpg``)
of ``n`` such frames cheaply (one smooth random texture per scene, no rendering): a
scene is either a single frame or a *run* of consecutive frames panning across its texture
by ``PAN_PX`` per frame (each frame within a few hash bits of the next, the ends far
apart: exactly the chains single linkage builds), and one long run holds ``chain_share`` of
all frames (the group that unbalances a split). Frames have the endoscope layout the
perceptual hash expects: a lit picture inside a black border.

Deterministic: the same ``n`` and ``seed`` give byte-identical files.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

FRAME_W_PX, FRAME_H_PX = 720, 576
CONTENT_BOX_PX = (40, 24, 690, 552)  # (x0, y0, x1, y1): the lit picture inside the black border
PAN_PX = 4  # camera motion between consecutive frames of a run
CLASSES = ("dyed-lifted-polyps", "dyed-resection-margins", "esophagitis", "normal-cecum", "normal-pylorus",
           "normal-z-line", "polyps", "ulcerative-colitis")  # Kvasir v2 class folders
_CELL_PX = 48  # texture detail: one random colour per cell, bicubic in between
_JPEG_QUALITY = 88


@dataclass(frozen=True)
class Scene:
    """One texture and the frames cut from it: ``n_frames`` consecutive pans."""

    seed: int
    n_frames: int
    class_name: str
    first_index: int


def plan_scenes(n: int, seed: int = 0, run_share: float = 0.5, max_run: int = 40,
                chain_share: float = 0.01) -> list[Scene]:
    """Scenes covering exactly ``n`` frames: one long run (``chain_share`` of n, >= 2 frames),
    runs of 2..``max_run`` frames for ``run_share`` of the rest, single frames for the remainder."""
    rng = np.random.default_rng(seed)
    lengths = [max(2, round(chain_share * n))] if n >= 4 else []
    in_runs = int(run_share * (n - sum(lengths)))
    while in_runs >= 2:
        length = min(in_runs, int(rng.integers(2, max_run + 1)))
        lengths.append(length)
        in_runs -= length
    lengths += [1] * (n - sum(lengths))
    order = rng.permutation(len(lengths))  # the long run lands anywhere in the file order
    scenes, first = [], 0
    for k in order:
        scenes.append(Scene(int(rng.integers(2**31)), lengths[k], CLASSES[int(rng.integers(len(CLASSES)))], first))
        first += lengths[k]
    return scenes


def _texture(rng: np.random.Generator, width_px: int, height_px: int) -> Image.Image:
    """A smooth mucosa-coloured random field (reds and pinks, grey level ~100)."""
    cells = (max(2, height_px // _CELL_PX), max(2, width_px // _CELL_PX))
    base = np.array([170, 90, 80], dtype=np.float64) + rng.normal(0, 1, 3) * [20, 12, 10]
    field = base + rng.normal(0, 1, (*cells, 3)) * [45, 35, 30]
    small = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))
    return small.resize((width_px, height_px), Image.Resampling.BICUBIC)


def _write_scene(args: tuple[Scene, str]) -> list[str]:
    scene, root = args
    rng = np.random.default_rng(scene.seed)
    x0, y0, x1, y1 = CONTENT_BOX_PX
    w, h = x1 - x0, y1 - y0
    texture = _texture(rng, w + PAN_PX * scene.n_frames, h)
    folder = Path(root) / scene.class_name
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(scene.n_frames):
        canvas = Image.new("RGB", (FRAME_W_PX, FRAME_H_PX))
        canvas.paste(texture.crop((k * PAN_PX, 0, k * PAN_PX + w, h)), (x0, y0))
        name = f"{scene.class_name}/frame{scene.first_index + k:06d}.jpg"
        canvas.save(Path(root) / name, quality=_JPEG_QUALITY)
        names.append(name)
    return names


def write_video_frames(root: str | Path, n: int, seed: int = 0, workers: int | None = None,
                       **plan: float) -> list[Scene]:
    """Write ``n`` frames under ``root/<class>/frameNNNNNN.jpg``; returns the scenes (runs) written.

    Args:
        root: output folder (a Kvasir v2 layout: ``kvasir-ml data index kvasir-v2 ROOT``).
        n: number of frames.
        seed: same seed, same bytes.
        workers: processes (None = every CPU up to 8).
        plan: ``run_share``, ``max_run``, ``chain_share`` for ``plan_scenes``.
    """
    scenes = plan_scenes(n, seed, **plan)  # type: ignore[arg-type]
    workers = max(1, min(8, os.cpu_count() or 1)) if workers is None else workers
    jobs = [(scene, str(root)) for scene in scenes]
    if workers <= 1:
        for job in jobs:
            _write_scene(job)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_write_scene, jobs, chunksize=16))
    return scenes
