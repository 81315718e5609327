"""``BatchDetector`` (ultralytics' predict steps once per batch) gives the boxes ``detect_arrays`` gives."""

from __future__ import annotations

import numpy as np

from kvasir_ml.data.inset import detect_inset
from kvasir_ml.detection.batch import BatchDetector
from kvasir_ml.detection.detect import detect_arrays
from kvasir_ml.detection.yolo import load_yolo


def _frames(n: int, size_hw: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        rgb = np.full((*size_hw, 3), (170, 80, 70), np.uint8)
        y, x = 10 + 3 * i, 20 + 5 * i
        rgb[y:y + 40, x:x + 50] = (230, 140, 120)  # a bright blob moving across
        rgb[int(0.7 * size_hw[0]):, : int(0.3 * size_hw[1])] = (0, 191, 149)  # a green inset panel
        frames.append(np.clip(rgb + rng.integers(0, 20, rgb.shape), 0, 255).astype(np.uint8))
    return frames


def test_batch_detector_matches_detect_arrays():
    # An untrained yolov8n at a very low threshold: hundreds of boxes per batch through NMS,
    # letterboxing of a non-square frame, and the inset masked first.
    model = load_yolo("yolov8n.yaml")
    model.ckpt = {"kvasir_ml": {"imgsz": 96, "inset_mode": "masked", "box_class_names": list(model.names.values())}}
    frames = _frames(6, (128, 160))
    insets = [detect_inset(f) for f in frames]
    assert {i.state for i in insets} == {"green"}
    conf = 1e-6
    old = detect_arrays(model, frames, device="cpu", conf=conf, insets=insets, batch=3)
    batch = BatchDetector(model, "cpu", conf=conf)
    new = batch.detect(frames[:3], insets[:3]) + batch(batch.prepare(frames[3:], insets[3:]), frames[3].shape)
    assert sum(map(len, old)) > 50
    assert new == old
    assert batch.detect([], None) == []
