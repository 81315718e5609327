"""Video keyframes without a server: reduction, Label Studio's interpolation and lifespan, round
trips, and the errors a bad annotation gets (each naming the task)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvasir_ml.labelstudio.convert import ConvertError
from kvasir_ml.labelstudio.video_tracks import (
    VideoFrame, check_sequence, frame_log_from_tracks, frames_from_sequence, keyframes_from_track,
    per_frame_boxes_px, region_from_track, tracks_from_frame_log, tracks_from_result,
)

VIDEO = VideoFrame(fps=10.0, n_frames=40, width=200, height=100)
CLASSES = ["polyp", "resection-margin"]


def _kf(frame, x, y, w=10.0, h=10.0, enabled=True):
    return {"frame": frame, "time": (frame - 1) / 10, "x": x, "y": y, "width": w, "height": h, "rotation": 0,
            "enabled": enabled}


def test_linear_track_keeps_only_its_ends():
    frames = list(range(5, 21))
    boxes = [[10 + 2 * i, 20 + i, 30, 20] for i in range(len(frames))]  # constant velocity
    kfs = keyframes_from_track(frames, boxes, VIDEO)
    assert [k["frame"] for k in kfs] == [6, 21]  # 1-based, as Label Studio numbers frames
    assert [k["enabled"] for k in kfs] == [True, False]  # the track ends on its last frame
    assert kfs[0]["x"] == pytest.approx(5.0) and kfs[0]["time"] == pytest.approx(0.5)


def test_turn_needs_a_keyframe_and_every_frame_stays_within_tolerance():
    frames = list(range(20))
    boxes = [[10 + 5 * min(i, 10) - 5 * max(0, i - 10), 30, 20, 20] for i in frames]  # right, then back
    kfs = keyframes_from_track(frames, boxes, VIDEO, tolerance_pct=1.0)
    assert 11 in [k["frame"] for k in kfs]  # the turning point (frame index 10)
    back = per_frame_boxes_px(check_sequence(kfs, VIDEO, "t"), VIDEO)
    assert sorted(back) == frames
    for f in frames:  # 1 % of a 200 px wide frame = 2 px
        assert max(abs(a - b) for a, b in zip(back[f], boxes[f])) <= 2.0 + 1e-6


def test_zero_tolerance_keeps_a_keyframe_wherever_the_path_bends():
    frames = list(range(6))
    boxes = [[10 + (i * i), 10, 20, 20] for i in frames]  # accelerating: every inner frame bends
    assert len(keyframes_from_track(frames, boxes, VIDEO, tolerance_pct=0.0)) == 6


def test_gap_in_a_track_splits_it_into_runs_hidden_between():
    frames = [0, 1, 2, 10, 11]
    boxes = [[20, 20, 20, 20]] * 5
    kfs = keyframes_from_track(frames, boxes, VIDEO)
    assert [(k["frame"], k["enabled"]) for k in kfs] == [(1, True), (3, False), (11, True), (12, False)]
    shown = dict(frames_from_sequence(kfs, VIDEO.n_frames))
    assert sorted(shown) == frames  # hidden on frames 3..9: a disabled keyframe ends the lifespan


def test_step_of_every_kth_frame_interpolates_between_processed_frames():
    frames = [0, 3, 6, 9]
    boxes = [[10 + 3 * i, 10, 20, 20] for i in range(4)]
    kfs = keyframes_from_track(frames, boxes, VIDEO, max_step=3)
    assert [k["frame"] for k in kfs] == [1, 10]
    shown = per_frame_boxes_px(kfs, VIDEO)
    assert sorted(shown) == list(range(10)) and shown[4][0] == pytest.approx(14.0)


def test_label_studio_semantics_enabled_last_keyframe_lasts_to_the_end():
    seq = [_kf(5, 10, 10), _kf(9, 30, 50)]
    shown = dict(frames_from_sequence(seq, n_frames=12))
    assert sorted(shown) == list(range(4, 12))  # hidden before frame 5 (index 4), held after frame 9
    assert shown[6][:2] == pytest.approx([20.0, 30.0])  # frame 7: half way
    assert shown[11][:2] == [30.0, 50.0]


def test_disabled_keyframe_shows_on_its_own_frame_only():
    seq = [_kf(1, 10, 10, enabled=False), _kf(4, 20, 20, enabled=True), _kf(6, 40, 20, enabled=False)]
    shown = dict(frames_from_sequence(seq, n_frames=10))
    assert sorted(shown) == [0, 3, 4, 5]
    assert shown[4][0] == pytest.approx(30.0)


@st.composite
def tracks(draw):
    n = draw(st.integers(1, 30))
    start = draw(st.integers(0, VIDEO.n_frames - n))
    x = draw(st.lists(st.floats(0, 150), min_size=n, max_size=n))
    w = draw(st.lists(st.floats(2, 50), min_size=n, max_size=n))
    return list(range(start, start + n)), [[xi, 10.0, wi, 30.0] for xi, wi in zip(x, w)]


@settings(max_examples=60, deadline=None)
@given(tracks(), st.sampled_from([0.0, 0.5, 1.0, 3.0]))
def test_round_trip_keyframes_perframe_keyframes_is_lossless(track, tol):
    frames, boxes = track
    kfs = keyframes_from_track(frames, boxes, VIDEO, tolerance_pct=tol)
    per_frame = per_frame_boxes_px(check_sequence(kfs, VIDEO, "t"), VIDEO)
    assert sorted(per_frame) == frames
    limit_px = max(tol, 1e-6) * VIDEO.width / 100 + 1e-3  # the tolerance, plus rounding to 1e-3 px
    assert all(max(abs(a - b) for a, b in zip(per_frame[f], boxes[i])) <= limit_px for i, f in enumerate(frames))
    # keyframes -> per-frame -> keyframes: the same per-frame boxes again, within rounding
    again = keyframes_from_track(sorted(per_frame), [per_frame[f] for f in sorted(per_frame)], VIDEO, tol)
    per_frame_2 = per_frame_boxes_px(again, VIDEO)
    assert sorted(per_frame_2) == frames
    assert all(max(abs(a - b) for a, b in zip(per_frame_2[f], per_frame[f])) <= limit_px for f in frames)
    assert len(again) <= len(kfs)


def test_result_to_tracks_keeps_pushed_ids_and_numbers_drawn_regions():
    pushed = region_from_track(7, "polyp", [_kf(2, 10, 10), _kf(4, 20, 10, enabled=False)], VIDEO, score=0.8)
    drawn = {"id": "aXbY", "type": "videorectangle", "value": {"labels": ["resection-margin"],
                                                               "sequence": [_kf(3, 50, 50, enabled=False)]}}
    other = {"type": "choices", "value": {"choices": ["x"]}}
    tracks = tracks_from_result([pushed, drawn, other], VIDEO, CLASSES, task_id=12)
    assert [(t["track_id"], t["class"]) for t in tracks] == [(7, "polyp"), (8, "resection-margin")]
    assert sorted(tracks[0]["boxes"]) == [1, 2, 3]
    assert tracks[0]["boxes"][2] == pytest.approx([30.0, 10.0, 20.0, 10.0])  # 15 % of 200 px, 10 % of 100 px
    log = list(frame_log_from_tracks(tracks, VIDEO))
    assert len(log) == VIDEO.n_frames and [b["track_id"] for b in log[2]["boxes"]] == [7, 8]
    # and back: the per-frame log regroups into the same tracks
    regrouped, untracked = tracks_from_frame_log(log, "log")
    assert untracked == 0 and regrouped[7]["frames"] == [1, 2, 3]


@pytest.mark.parametrize("region, message", [
    ({"id": "r1", "type": "videorectangle", "value": {"labels": ["polyp"]}}, "value.sequence must be"),
    ({"id": "r1", "type": "videorectangle", "value": {"labels": ["polyp"], "sequence": [{"frame": 2, "x": "a"}]}},
     "lacks numeric"),
    ({"id": "r1", "type": "videorectangle", "value": {"labels": ["polyp"], "sequence": [{"x": 1}]}},
     "no integer 'frame'"),
    ({"id": "r1", "type": "videorectangle", "value": {"sequence": [_kf(2, 1, 1)]}}, "exactly one box class"),
    ({"id": "r1", "type": "videorectangle", "value": {"labels": ["tumour"], "sequence": [_kf(2, 1, 1)]}},
     "unknown box class 'tumour'"),
    ({"id": "r1", "type": "videorectangle", "value": {"labels": ["polyp"], "sequence": [_kf(41, 1, 1)]}},
     "frame 41 lies outside the video"),
    ({"id": "r1", "type": "videorectangle", "value": {"labels": ["polyp"], "sequence": [_kf(0, 1, 1)]}},
     "outside the video"),
    ({"id": "r1", "type": "videorectangle", "value": {"labels": ["polyp"], "sequence": [_kf(2, 1, 1, w=0)]}},
     "empty box"),
    ({"id": "r1", "type": "videorectangle", "value": {"labels": ["polyp"],
                                                      "sequence": [{**_kf(2, 1, 1), "rotation": 30}]}}, "rotated"),
    ({"id": "r1", "type": "videorectangle", "value": "oops"}, "no value object"),
])
def test_bad_regions_are_errors_naming_the_task(region, message):
    with pytest.raises(ConvertError, match=message) as info:
        tracks_from_result([region], VIDEO, CLASSES, task_id=99)
    assert str(info.value).startswith("task 99, region r1")


def test_result_that_is_not_a_list_names_the_task():
    with pytest.raises(ConvertError, match="task 5: annotation result is not a list"):
        tracks_from_result({"x": 1}, VIDEO, CLASSES, task_id=5)


def test_frame_log_errors_name_the_line():
    with pytest.raises(ConvertError, match="f.jsonl: line 2 .*without class"):
        tracks_from_frame_log([{"frame": 0, "boxes": []}, {"frame": 1, "boxes": [{"xywh_px": [1, 2, 3, 4]}]}],
                              "f.jsonl")
    with pytest.raises(ConvertError, match="track 3 goes back"):
        tracks_from_frame_log([{"frame": 2, "boxes": [{"class": "polyp", "xywh_px": [1, 2, 3, 4], "track_id": 3}]},
                               {"frame": 1, "boxes": [{"class": "polyp", "xywh_px": [1, 2, 3, 4], "track_id": 3}]}],
                              "f.jsonl")


def test_keyframe_times_follow_the_frame_rate():
    kfs = keyframes_from_track([0, 25], [[0, 0, 10, 10], [50, 0, 10, 10]], VideoFrame(25.0, 30, 100, 100))
    assert [k["time"] for k in kfs] == [0.0, 1.0] and all(not math.isnan(k["x"]) for k in kfs)


def _log_line(frame, *boxes):
    return {"frame": frame, "boxes": [{"class": c, "score": s, "xywh_px": b, "track_id": t} for c, s, b, t in boxes]}


def test_prediction_from_frame_log_one_region_per_track_and_every_kth_frame():
    from kvasir_ml.labelstudio.video_sync import prediction_from_frame_log

    log = [_log_line(f, ("polyp", 0.8, [10 + f, 10, 20, 20], 1), ("polyp", 0.3, [5, 5, 9, 9], None))
           for f in range(0, 20, 2)]  # `video predict --every 2`
    log += [_log_line(30, ("resection-margin", 0.6, [50, 50, 30, 30], 4))]
    pred, rep = prediction_from_frame_log(iter(log), VIDEO, "v1", "f.jsonl")
    assert (rep.n_tracks, rep.n_boxes, rep.n_untracked) == (2, 11, 10)
    assert [r["id"] for r in pred["result"]] == ["track-1", "track-4"]
    assert [k["frame"] for k in pred["result"][0]["value"]["sequence"]] == [1, 19]  # one run: the step is 2
    assert pred["result"][1]["value"]["labels"] == ["resection-margin"] and pred["model_version"] == "v1"
    assert pred["score"] == pytest.approx((0.8 * 10 + 0.6) / 11, abs=1e-5)


def test_frame_log_errors_name_the_file(tmp_path):
    from kvasir_ml.labelstudio.video_sync import prediction_from_frame_log
    from kvasir_ml.video.render import iter_frame_log

    path = tmp_path / "frames.jsonl"
    path.write_text('{"frame": 0, "boxes": []}\n{oops\n')
    with pytest.raises(ValueError, match=r"frames.jsonl:2: not a JSON line"):
        list(iter_frame_log(path))
    with pytest.raises(ConvertError, match="f.jsonl: frame 40 lies outside the video"):
        prediction_from_frame_log([_log_line(40, ("polyp", 0.9, [1, 1, 5, 5], 1))], VIDEO, "v", "f.jsonl")
