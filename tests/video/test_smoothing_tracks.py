"""Smoothing, the tracker on ground-truth boxes, MOT scoring and the frame-log renderings
(real ultralytics tracker and motmetrics; no model needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kvasir_ml.video.evaluate import evaluate_video
from kvasir_ml.video.render import plot_timeline, summarize
from kvasir_ml.video.smoothing import (LabelSmoother, SmoothingConfig, count_changes, detection_delays,
                                       flicker_per_min)
from kvasir_ml.video.tracks import BoxTracker


def _noisy_scores(seed: int, n: int = 300) -> tuple[list[bool], list[float]]:
    """A finding present in frames 100..199, scores noisy around a 0.5 threshold."""
    rng = np.random.default_rng(seed)
    truth = [100 <= i < 200 for i in range(n)]
    scores = [float(np.clip((0.62 if t else 0.38) + rng.normal(0, 0.12), 0, 1)) for t in truth]
    return truth, scores


def test_hysteresis_cuts_flicker_and_delays_little():
    truth, scores = _noisy_scores(0)
    sm = LabelSmoother({"polyp": 0.5}, SmoothingConfig(tau_s=0.2, off_ratio=0.7))
    smoothed = [("polyp" in sm.update(i / 25, {"polyp": s})[1]) for i, s in enumerate(scores)]
    raw = [s >= 0.5 for s in scores]
    assert count_changes(smoothed) < count_changes(raw) / 4
    assert count_changes(smoothed) >= 2  # it does switch on and off
    (delay,) = detection_delays(truth, smoothed)
    assert delay is not None and delay <= 12  # about half a second at 25 fps
    assert flicker_per_min(raw, 12.0) == pytest.approx(5 * count_changes(raw))


def test_no_averaging_and_no_hysteresis_is_the_raw_decision():
    _, scores = _noisy_scores(1)
    sm = LabelSmoother({"polyp": 0.5}, SmoothingConfig(tau_s=0.0, off_ratio=1.0))
    assert [("polyp" in sm.update(i / 25, {"polyp": s})[1]) for i, s in enumerate(scores)] == [s >= 0.5 for s in scores]


def test_delays_name_missed_episodes():
    assert detection_delays([0, 1, 1, 0, 1, 1, 1], [0, 0, 1, 0, 0, 0, 0]) == [1, None]


def _tracked_log(truth: dict, path, jitter_px: float = 1.5) -> None:
    """A frame log whose boxes are the ground truth's (jittered) passed through ByteTrack."""
    rng = np.random.default_rng(0)
    tracker = BoxTracker(["polyp"], fps=truth["fps"])
    with open(path, "w") as fh:
        for f in truth["frames"]:
            boxes = [{"class": "polyp", "score": 0.8,
                      "xywh_px": [v + rng.normal(0, jitter_px) for v in b["xywh_px"][:2]] + b["xywh_px"][2:]}
                     for b in f["boxes"]]
            entry = {"frame": f["index"], "time_s": f["time_s"], "inset": f["inset"],
                     "labels": {"polyp": 0.9 if f["labels"] else 0.1}, "smoothed": {"polyp": 0.9 if f["labels"] else 0.1},
                     "predicted_labels": f["labels"], "alerts": f["labels"], "boxes": tracker.update(boxes)}
            fh.write(json.dumps(entry) + "\n")


def test_tracker_keeps_identities_and_mot_scores_them(synth_video, tmp_path):
    truth = json.loads(synth_video.read_text())
    log = tmp_path / "frames.jsonl"
    _tracked_log(truth, log)
    result = evaluate_video(log, synth_video)
    mot = result["mot"]
    assert mot["num_switches"] == 0 and mot["num_unique_objects"] == 2
    assert mot["mota"] > 0.8 and mot["idf1"] > 0.8
    ids = {b["track_id"] for line in log.read_text().splitlines() for b in json.loads(line)["boxes"]}
    assert len(ids - {None}) == 2  # one id per polyp
    polyp = result["alerts"]["polyp"]
    assert polyp["smoothed"]["missed_episodes"] == 0 and polyp["smoothed"]["frame_recall"] == 1.0


def test_mot_counts_an_identity_switch(synth_video, tmp_path):
    truth = json.loads(synth_video.read_text())
    first = [f["index"] for f in truth["frames"] if any(b["id"] == 1 for b in f["boxes"])]
    switch_at = first[len(first) // 2]  # polyp 1 changes id halfway through its time in view
    log = tmp_path / "frames.jsonl"
    with open(log, "w") as fh:
        for f in truth["frames"]:
            boxes = [{"class": "polyp", "score": 0.9, "xywh_px": b["xywh_px"],
                      "track_id": b["id"] + (10 if b["id"] == 1 and f["index"] >= switch_at else 0)} for b in f["boxes"]]
            fh.write(json.dumps({"frame": f["index"], "time_s": f["time_s"], "inset": f["inset"], "boxes": boxes}) + "\n")
    mot = evaluate_video(log, synth_video)["mot"]
    assert mot["num_switches"] == 1 and mot["num_misses"] == 0 and mot["mota"] < 1.0


def test_summary_and_timeline_from_the_log(synth_video, tmp_path):
    truth = json.loads(synth_video.read_text())
    log = tmp_path / "frames.jsonl"
    _tracked_log(truth, log)
    s = summarize(log, truth["fps"])
    present = [f["time_s"] for f in truth["frames"] if f["labels"]]
    (polyp,) = s["findings"]
    assert polyp["first_seen_s"] == pytest.approx(present[0], abs=1e-3)
    assert polyp["last_seen_s"] == pytest.approx(present[-1], abs=1e-3)
    assert polyp["alert_s"] == pytest.approx(len(present) / truth["fps"], abs=1e-3)
    assert s["longest_track"]["n_frames"] == max(t["n_frames"] for t in s["tracks"])
    png = plot_timeline(log, tmp_path / "timeline.png", {"on": {"polyp": 0.5}, "off": {"polyp": 0.3}})
    assert png.stat().st_size > 5000


def test_a_log_from_another_video_is_refused(synth_video, tmp_path):
    log = tmp_path / "frames.jsonl"
    log.write_text(json.dumps({"frame": 999, "time_s": 99.9, "inset": {"state": "none"}}) + "\n")
    with pytest.raises(ValueError, match="frame 999 is not in the ground truth"):
        evaluate_video(log, synth_video)


def test_botsort_with_camera_motion_compensation_keeps_identities(synth_video):
    from kvasir_ml.video.io import iter_frames

    truth = json.loads(synth_video.read_text())
    tracker = BoxTracker(["polyp"], fps=truth["fps"], kind="botsort")
    ids_per_object: dict[int, set] = {}
    for (_, _, rgb), f in zip(iter_frames(synth_video.parent / "video.mp4"), truth["frames"]):
        boxes = [{"class": "polyp", "score": 0.8, "xywh_px": b["xywh_px"]} for b in f["boxes"]]
        for gt, out in zip(f["boxes"], tracker.update(boxes, np.ascontiguousarray(rgb[:, :, ::-1]))):
            if out["track_id"] is not None:
                ids_per_object.setdefault(gt["id"], set()).add(out["track_id"])
    assert sorted(ids_per_object) == [1, 2] and all(len(ids) == 1 for ids in ids_per_object.values())


def test_unknown_tracker_is_refused():
    with pytest.raises(ValueError, match="tracker must be one of"):
        BoxTracker(["polyp"], fps=10, kind="sort")
