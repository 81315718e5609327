"""Pure converters between per-frame tracked boxes and Label Studio ``VideoRectangle`` keyframes.

A Label Studio video region is one track: ``value.sequence`` holds keyframes ``{frame, time,
x, y, width, height, rotation, enabled}`` (box in percent of the frame, top-left origin) and
``value.labels`` its class. The labeling page (``VideoRectangleRegionModel`` in the editor)
reads them so, and ``frames_from_sequence`` follows it exactly:

* frames are numbered from 1 (video frame index ``i`` of ``frames.jsonl`` is frame ``i + 1``);
* before the first keyframe the region is hidden;
* at frame ``f`` the region is visible when the last keyframe at or before ``f`` is enabled,
  or is ``f`` itself (a disabled keyframe shows on its own frame only: the track ends there);
* its box is the keyframe's at a keyframe, linear between the keyframes around ``f``
  (x, y, width, height each), and the last keyframe's after it.

``keyframes_from_track`` goes the other way with as few keyframes as the tolerance allows:
each run of consecutive frames starts with a keyframe and ends with a disabled one; in between
a frame becomes a keyframe only where linear interpolation would miss the tracked box by more
than ``tolerance_pct`` (percent of the frame's width for x/width, of its height for y/height).
So ``keyframes -> per-frame -> keyframes`` gives the same keyframes, and per-frame boxes come
back within the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from kvasir_ml.geometry import clip_xywh_px, xywh_pct_to_xywh_px, xywh_px_to_xywh_pct
from kvasir_ml.labelstudio.convert import ConvertError

DEFAULT_TOLERANCE_PCT = 1.0  # keyframes where interpolation would miss by more than 1 % of the frame
_COORDS = ("x", "y", "width", "height")
_DIGITS = 4  # percent rounded to 1e-4 (0.0001 % of 1920 px = 0.002 px)


@dataclass(frozen=True)
class VideoFrame:
    """What pull and push need to know about the video: rate, length (frames), size (pixels)."""

    fps: float
    n_frames: int
    width: int
    height: int


def track_runs(frames: Sequence[int], max_step: int = 1) -> list[list[int]]:
    """Split a track's sorted frame indices into runs with no gap wider than ``max_step``."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f - runs[-1][-1] <= max_step:
            runs[-1].append(f)
        else:
            runs.append([f])
    return runs


def _lerp(a: Sequence[float], b: Sequence[float], r: float) -> list[float]:
    return [av + (bv - av) * r for av, bv in zip(a, b)]


def _reduce(frames: Sequence[int], boxes: Sequence[Sequence[float]], tolerance: Sequence[float],
            lo: int, hi: int, keep: set[int]) -> None:
    """Douglas-Peucker over one run: keep ``lo`` and ``hi``; split at the worst frame while any
    frame between them is interpolated worse than the tolerance (iterative: long runs)."""
    stack = [(lo, hi)]
    while stack:
        lo, hi = stack.pop()
        keep.update((lo, hi))
        worst, worst_excess = None, 0.0
        for k in range(lo + 1, hi):
            r = (frames[k] - frames[lo]) / (frames[hi] - frames[lo])
            guess = _lerp(boxes[lo], boxes[hi], r)
            excess = max(abs(g - v) / t for g, v, t in zip(guess, boxes[k], tolerance))
            if excess > 1.0 and excess > worst_excess:
                worst, worst_excess = k, excess
        if worst is not None:
            stack += [(lo, worst), (worst, hi)]


def keyframes_from_track(frames: Sequence[int], boxes_px: Sequence[Sequence[float]], video: VideoFrame,
                         tolerance_pct: float = DEFAULT_TOLERANCE_PCT, max_step: int = 1) -> list[dict[str, Any]]:
    """The fewest keyframes (Label Studio's ``sequence``) that reproduce one track within the tolerance.

    Args:
        frames: 0-based frame indices of the track's boxes, increasing.
        boxes_px: the boxes (``x, y, w, h`` pixels), one per frame.
        video: its rate and size (``time`` and percent).
        tolerance_pct: largest interpolation miss, percent of the frame (0 keeps every frame).
        max_step: frames further apart than this end a run (``every`` of ``video predict``).

    Returns:
        The keyframes, sorted; each run's last one is ``enabled: False`` (the track ends there).

    Raises:
        ValueError: frames not increasing, lengths differ, or a negative tolerance.
    """
    if len(frames) != len(boxes_px):
        raise ValueError(f"{len(frames)} frames but {len(boxes_px)} boxes")
    if any(b <= a for a, b in zip(frames, frames[1:])):
        raise ValueError("track frames must be strictly increasing")
    if tolerance_pct < 0:
        raise ValueError(f"tolerance_pct must be >= 0, got {tolerance_pct}")
    pct = [xywh_px_to_xywh_pct(b, video.width, video.height) for b in boxes_px]
    # A zero tolerance still forgives float noise (1e-6 %).
    tol = max(tolerance_pct, 1e-6)
    out: list[dict[str, Any]] = []
    start = 0
    for run in track_runs(list(frames), max_step):
        idx = list(range(start, start + len(run)))
        start += len(run)
        keep: set[int] = set()
        _reduce(frames, pct, (tol,) * 4, idx[0], idx[-1], keep)
        for k in sorted(keep):
            out.append(_keyframe(frames[k], pct[k], video.fps, enabled=k != idx[-1]))
    return out


def _keyframe(index: int, box_pct: Sequence[float], fps: float, enabled: bool) -> dict[str, Any]:
    return {"frame": int(index) + 1, "time": round(index / fps, 6), "enabled": enabled, "rotation": 0,
            **{k: round(float(v), _DIGITS) for k, v in zip(_COORDS, box_pct)}}


def check_sequence(sequence: Any, video: VideoFrame, where: str) -> list[dict[str, Any]]:
    """Validate one region's keyframes; return them sorted by frame.

    Raises:
        ConvertError: not a non-empty list of keyframes with an integer ``frame`` and numeric
            x/y/width/height, a keyframe outside the video (frame < 1 or > its frame count), a
            rotated or empty box, or two keyframes on one frame. The message starts with ``where``.
    """
    if not isinstance(sequence, list) or not sequence:
        raise ConvertError(f"{where}: value.sequence must be a non-empty list of keyframes")
    seen: set[int] = set()
    for i, kf in enumerate(sequence):
        if not isinstance(kf, dict):
            raise ConvertError(f"{where}: keyframe {i} is not an object")
        frame = kf.get("frame")
        if isinstance(frame, bool) or not isinstance(frame, int):
            raise ConvertError(f"{where}: keyframe {i} has no integer 'frame' (got {frame!r:.40})")
        bad = [k for k in _COORDS if isinstance(kf.get(k), bool) or not isinstance(kf.get(k), (int, float))
               or not math.isfinite(kf[k])]
        if bad:
            raise ConvertError(f"{where}: keyframe at frame {frame} lacks numeric {bad}")
        if not 1 <= frame <= video.n_frames:
            raise ConvertError(f"{where}: keyframe at frame {frame} lies outside the video (frames 1..{video.n_frames})")
        if frame in seen:
            raise ConvertError(f"{where}: two keyframes at frame {frame}")
        seen.add(frame)
        if float(kf.get("rotation") or 0.0) % 360.0:
            raise ConvertError(f"{where}: keyframe at frame {frame} is rotated ({kf['rotation']} deg); boxes are "
                               "axis-aligned")
        if kf["width"] <= 0 or kf["height"] <= 0:
            raise ConvertError(f"{where}: keyframe at frame {frame} has an empty box "
                               f"(width {kf['width']}, height {kf['height']} %)")
        if "enabled" in kf and not isinstance(kf["enabled"], bool):
            raise ConvertError(f"{where}: keyframe at frame {frame}: 'enabled' must be true or false")
    return sorted(sequence, key=lambda kf: kf["frame"])


def frames_from_sequence(sequence: Sequence[dict[str, Any]], n_frames: int) -> Iterable[tuple[int, list[float]]]:
    """Per-frame boxes of one region as the labeling page shows them: ``(0-based frame, x y w h percent)``.

    Args:
        sequence: keyframes sorted by frame (``check_sequence``).
        n_frames: the video's frame count (an enabled last keyframe lasts to the end).
    """
    for j, kf in enumerate(sequence):
        box = [float(kf[k]) for k in _COORDS]
        yield kf["frame"] - 1, box
        if not kf.get("enabled", True):
            continue  # hidden until the next keyframe
        nxt = sequence[j + 1] if j + 1 < len(sequence) else None
        end = nxt["frame"] if nxt is not None else n_frames + 1
        for f in range(kf["frame"] + 1, end):
            guess = box if nxt is None else _lerp(box, [float(nxt[k]) for k in _COORDS],
                                                  (f - kf["frame"]) / (nxt["frame"] - kf["frame"]))
            yield f - 1, guess


def per_frame_boxes_px(sequence: Sequence[dict[str, Any]], video: VideoFrame) -> dict[int, list[float]]:
    """``{0-based frame: [x, y, w, h] pixels}`` of one region, clipped to the frame (boxes that
    leave the frame entirely are dropped on those frames)."""
    out: dict[int, list[float]] = {}
    for f, box_pct in frames_from_sequence(sequence, video.n_frames):
        box = clip_xywh_px(xywh_pct_to_xywh_px(box_pct, video.width, video.height), video.width, video.height)
        if box[2] > 0 and box[3] > 0:
            out[f] = [round(v, 3) for v in box]
    return out


# ---- regions <-> tracks ----------------------------------------------------------------------
TRACK_REGION_PREFIX = "track-"  # region id of a pushed track: "track-<track id>"


def region_from_track(track_id: int, box_class: str, keyframes: list[dict[str, Any]], video: VideoFrame,
                      score: float | None = None) -> dict[str, Any]:
    """One ``videorectangle`` result region (a prediction's or an annotation's) for one track."""
    from kvasir_ml.labelstudio.labeling_config import VIDEO_BOXES_NAME, VIDEO_NAME

    region: dict[str, Any] = {"id": f"{TRACK_REGION_PREFIX}{int(track_id)}", "type": "videorectangle", "from_name": VIDEO_BOXES_NAME,
              "to_name": VIDEO_NAME, "value": {"sequence": keyframes, "labels": [box_class],
                                               "framesCount": video.n_frames,
                                               "duration": round(video.n_frames / video.fps, 6)}}
    if score is not None:
        region["score"] = round(float(score), 5)
    return region


def tracks_from_result(result: Any, video: VideoFrame, box_classes: Sequence[str], task_id: Any) -> list[dict[str, Any]]:
    """An annotation's ``videorectangle`` regions as tracks with per-frame boxes in pixels.

    Region ids ``track-<n>`` (pushed tracks) keep track id ``n``; regions an annotator drew get
    the next free ids, in result order. Results of other types are ignored.

    Returns:
        ``[{"track_id", "class", "region_id", "boxes": {0-based frame: [x, y, w, h] px}}]``.

    Raises:
        ConvertError: the result is not a list, a region is malformed (no value/sequence, a bad
            keyframe, a keyframe outside the video), or its label is missing or not a box class.
            The message names the task and the region.
    """
    if not isinstance(result, list):
        raise ConvertError(f"task {task_id}: annotation result is not a list")
    regions = [r for r in result if isinstance(r, dict) and r.get("type") == "videorectangle"]
    tracks, used = [], set()
    for n, region in enumerate(regions):
        rid = str(region.get("id", f"#{n}"))
        where = f"task {task_id}, region {rid}"
        value = region.get("value")
        if not isinstance(value, dict):
            raise ConvertError(f"{where}: videorectangle region has no value object")
        labels = value.get("labels")
        if not isinstance(labels, list) or len(labels) != 1:
            raise ConvertError(f"{where}: needs exactly one box class in value.labels, got {labels!r:.80}")
        if labels[0] not in box_classes:
            raise ConvertError(f"{where}: unknown box class {labels[0]!r:.60} (the taxonomy's: {list(box_classes)})")
        sequence = check_sequence(value.get("sequence"), video, where)
        tid = _track_id(rid)
        if tid is not None and tid not in used:
            used.add(tid)
        else:
            tid = None
        tracks.append({"track_id": tid, "class": labels[0], "region_id": rid,
                       "boxes": per_frame_boxes_px(sequence, video)})
    next_id = max(used, default=0) + 1
    for track in tracks:
        if track["track_id"] is None:
            track["track_id"], next_id = next_id, next_id + 1
    return tracks


def _track_id(region_id: str) -> int | None:
    tail = region_id[len(TRACK_REGION_PREFIX):] if region_id.startswith(TRACK_REGION_PREFIX) else ""
    return int(tail) if tail.isdigit() else None


def frame_log_from_tracks(tracks: Sequence[dict[str, Any]], video: VideoFrame) -> Iterable[dict[str, Any]]:
    """Per-frame entries (``frames.jsonl`` of ``video predict``, boxes only), every frame of the video:
    ``{"frame", "time_s", "boxes": [{"class", "xywh_px", "track_id"}]}``."""
    for f in range(video.n_frames):
        boxes = [{"class": t["class"], "xywh_px": t["boxes"][f], "track_id": t["track_id"]}
                 for t in tracks if f in t["boxes"]]
        yield {"frame": f, "time_s": round(f / video.fps, 4), "boxes": boxes}


def tracks_from_frame_log(entries: Iterable[dict[str, Any]], where: str) -> tuple[dict[int, dict[str, Any]], int]:
    """Group a ``frames.jsonl``'s tracked boxes by track id.

    Returns:
        ``({track id: {"frames": [...], "boxes_px": [...], "classes": [...], "scores": [...]}}, n boxes
        without a track id)``.

    Raises:
        ConvertError: an entry without an integer ``frame`` or a box without ``xywh_px``/``class``
            (the message starts with ``where``, e.g. the file and line).
    """
    tracks: dict[int, dict[str, Any]] = {}
    untracked = 0
    for n, entry in enumerate(entries, 1):
        frame = entry.get("frame") if isinstance(entry, dict) else None
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise ConvertError(f"{where}: line {n} has no frame index")
        for box in entry.get("boxes") or []:
            xywh = box.get("xywh_px") if isinstance(box, dict) else None
            if not isinstance(xywh, list) or len(xywh) != 4 or not isinstance(box.get("class"), str):
                raise ConvertError(f"{where}: line {n} (frame {frame}) has a box without class and xywh_px")
            tid = box.get("track_id")
            if tid is None:
                untracked += 1
                continue
            t = tracks.setdefault(int(tid), {"frames": [], "boxes_px": [], "classes": [], "scores": []})
            if t["frames"] and frame <= t["frames"][-1]:
                raise ConvertError(f"{where}: line {n}: track {tid} goes back to frame {frame}")
            t["frames"].append(frame)
            t["boxes_px"].append([float(v) for v in xywh])
            t["classes"].append(box["class"])
            if box.get("score") is not None:
                t["scores"].append(float(box["score"]))
    return tracks, untracked
