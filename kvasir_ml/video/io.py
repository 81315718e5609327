"""Video decoding and encoding with OpenCV (the ``opencv-python`` wheel ultralytics already
needs: FFmpeg inside, no extra dependency).

Frames are RGB ``HxWx3 uint8`` everywhere in kvasir_ml; OpenCV's BGR stays inside this module.
The MP4 codec is ``mp4v`` (MPEG-4 Part 2): the pip wheels of OpenCV cannot write H.264.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


class VideoError(ValueError):
    """A video that cannot be opened or read (the message names the file), or a bad argument."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frames per second, frame count (an estimate for some
    containers), frame size in pixels."""

    path: str
    fps: float
    n_frames: int
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps if self.fps > 0 else 0.0


def _open(path: str | Path):
    import cv2

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot open as a video (not a video, or a codec OpenCV's FFmpeg lacks)")
    return cap


def probe_video(path: str | Path) -> VideoInfo:
    """The video's rate, length and size.

    Raises:
        VideoError: missing file, unreadable container, or no frame rate / size.
    """
    import cv2

    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        info = VideoInfo(str(path), fps, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))
    finally:
        cap.release()
    if fps <= 0 or info.width <= 0 or info.height <= 0:
        raise VideoError(f"{path}: the container gives no frame rate or frame size (fps={fps}, "
                         f"{info.width}x{info.height})")
    return info


def iter_frames(path: str | Path, every: int = 1, start_s: float = 0.0,
                end_s: float | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode frames one at a time: ``(frame index, time in s, RGB array)``.

    Args:
        path: the video.
        every: keep every k-th frame (the others are grabbed, not converted).
        start_s, end_s: time window (seek by time); ``end_s`` None = to the end.

    Raises:
        VideoError: the file cannot be opened, or bad arguments.
    """
    import cv2

    if every < 1:
        raise VideoError(f"{path}: every must be >= 1, got {every}")
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise VideoError(f"{path}: bad time window start_s={start_s}, end_s={end_s}")
    info = probe_video(path)
    cap = _open(path)
    try:
        index = int(round(start_s * info.fps))
        if index:
            # Frame-accurate seek: position by frame number (time seeks land on keyframes in some containers).
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        while end_s is None or index / info.fps < end_s:
            if (index - int(round(start_s * info.fps))) % every:
                if not cap.grab():
                    break
            else:
                ok, bgr = cap.read()
                if not ok:
                    break
                yield index, index / info.fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()


class VideoWriter:
    """An MP4 written frame by frame into ``<name>.partial.mp4``, renamed on a clean close
    (an interrupted run leaves no half file under the real name).

    Raises:
        VideoError: OpenCV cannot open an encoder for the path.
    """

    def __init__(self, path: str | Path, fps: float, frame_size_px: tuple[int, int]):
        import cv2

        self.path = Path(path)
        self.size = (int(frame_size_px[0]), int(frame_size_px[1]))
        self._tmp = self.path.with_name(self.path.stem + ".partial" + (self.path.suffix or ".mp4"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), self.size)
        if not writer.isOpened():
            raise VideoError(f"{self.path}: OpenCV cannot open an mp4v encoder for it")
        self._writer: cv2.VideoWriter | None = writer

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        assert self._writer is not None, f"{self.path}: written after close()"
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool = True) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if keep:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(keep=exc_type is None)


# Codecs browsers play (Label Studio's video player is the browser's): H.264, VP8/VP9, AV1.
# OpenCV's pip wheels write MPEG-4 Part 2 (mp4v/FMP4), which Chrome and Firefox do not play.
BROWSER_FOURCCS = frozenset({"avc1", "h264", "H264", "x264", "X264", "VP80", "VP90", "vp08", "vp09", "av01", "AV01"})


def video_fourcc(path: str | Path) -> str:
    """The video stream's codec tag as four characters (e.g. ``FMP4``, ``avc1``, ``VP80``)."""
    import cv2

    cap = _open(path)
    try:
        code = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
    finally:
        cap.release()
    return code.to_bytes(4, "little").decode("latin-1")


def transcode_webm(src: str | Path, dst: str | Path) -> int:
    """Re-encode ``src`` as VP8 WebM (browsers play it; OpenCV's wheels can write it), frame for
    frame at the same rate and size; returns the frame count.

    Raises:
        VideoError: ``src`` unreadable, or no VP8 encoder, or a frame count that differs afterwards.
    """
    import cv2

    info = probe_video(src)
    dst = Path(dst)
    tmp = dst.with_name(dst.stem + ".partial.webm")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"VP80"), float(info.fps), (info.width, info.height))
    if not writer.isOpened():
        raise VideoError(f"{dst}: OpenCV cannot open a VP8 (WebM) encoder")
    n = 0
    try:
        for _, _, rgb in iter_frames(src):
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            n += 1
    finally:
        writer.release()
    if probe_video(tmp).n_frames != n:
        tmp.unlink(missing_ok=True)
        raise VideoError(f"{dst}: the WebM copy does not hold the {n} frames of {src}")
    os.replace(tmp, dst)
    return n
