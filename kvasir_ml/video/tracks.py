"""Box identities over time with ultralytics' own multi-object trackers (ByteTrack, BoT-SORT).

The detector runs through ``detection.detect.detect_arrays`` (the still-image path, inset
masking included); its boxes are handed to the tracker as a small results-like object, the
interface ``BYTETracker.update`` documents (``conf``, ``cls``, ``xywh`` centre format, boolean
indexing). Each box that joins an active track gets that track's id; the rest get ``None``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

TRACKERS = ("bytetrack", "botsort")
# ultralytics' tracker YAMLs assume 30 fps for track_buffer (frames a lost track is kept).
_REFERENCE_FPS = 30.0


class _Detections:
    """Boxes of one frame in the form ultralytics' trackers read."""

    def __init__(self, xywh_px: np.ndarray, conf: np.ndarray, cls: np.ndarray):
        self.xywh_px, self.conf, self.cls = xywh_px, conf, cls

    @property
    def xywh(self) -> np.ndarray:  # centre x, centre y, w, h (ultralytics' xywh)
        b = self.xywh_px
        return np.stack([b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2, b[:, 2], b[:, 3]], axis=1)

    @property
    def xyxy(self) -> np.ndarray:
        b = self.xywh_px
        return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> "_Detections":
        return _Detections(self.xywh_px[index], self.conf[index], self.cls[index])


class BoxTracker:
    """One tracker per video: ``update(boxes, bgr)`` per processed frame, in order.

    Args:
        class_names: the detector's box classes (the tracker works with class indices).
        fps: the rate of the frames given to it (the video's fps / every): scales how long a
            lost track is kept (ultralytics' ``track_buffer`` is in frames at 30 fps).
        kind: ``bytetrack`` or ``botsort`` (BoT-SORT compensates camera motion: scope pans).
        low_conf: the tracker's second-stage threshold (boxes between it and ``high_conf``
            can only extend a track, never start one).
        high_conf: first-stage and new-track threshold.
    """

    def __init__(self, class_names: Sequence[str], fps: float, kind: str = "bytetrack", low_conf: float = 0.1,
                 high_conf: float = 0.25):
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        if kind not in TRACKERS:
            raise ValueError(f"tracker must be one of {TRACKERS}, got {kind!r}")
        args = IterableSimpleNamespace(**YAML.load(check_yaml(f"{kind}.yaml")))
        args.track_buffer = max(1, int(round(args.track_buffer * fps / _REFERENCE_FPS)))
        args.track_low_thresh, args.track_high_thresh, args.new_track_thresh = low_conf, high_conf, high_conf
        self.kind = kind
        self.names = list(class_names)
        self._tracker: Any = TRACKER_MAP[kind](args)  # BYTETracker or BOTSORT

    def update(self, boxes: Sequence[dict[str, Any]], bgr: np.ndarray | None = None) -> list[dict[str, Any]]:
        """The frame's boxes (``{"class", "score", "xywh_px"}``), each with ``track_id`` added
        (None when it joined no active track), in the input order.

        Args:
            boxes: the detector's boxes for this frame.
            bgr: the frame (BoT-SORT's camera-motion compensation reads it; ByteTrack ignores it).
        """
        dets = _Detections(np.asarray([b["xywh_px"] for b in boxes], np.float32).reshape(-1, 4),
                           np.asarray([b["score"] for b in boxes], np.float32),
                           np.asarray([self.names.index(b["class"]) for b in boxes], np.float32))
        rows = self._tracker.update(dets, bgr)
        ids: dict[int, int] = {}
        for row in np.asarray(rows).reshape(-1, 8):  # x1 y1 x2 y2 track_id score cls det_index
            ids[int(row[7])] = int(row[4])
        return [{**b, "track_id": ids.get(i)} for i, b in enumerate(boxes)]
