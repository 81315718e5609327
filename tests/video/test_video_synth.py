"""The synthetic video generator: deterministic, and it has the events the issue asks for."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kvasir_ml.video.io import VideoError, iter_frames, probe_video
from kvasir_ml.video.smoothing import episodes
from kvasir_ml.video.synth import (VideoSynthError, render_frames, strip_world, synthesize_video,
                                   synthetic_world)


def test_video_and_ground_truth_agree(synth_video):
    truth = json.loads(synth_video.read_text())
    info = probe_video(synth_video.parent / "video.mp4")
    assert (info.width, info.height, info.n_frames) == (160, 128, 48)
    assert info.fps == pytest.approx(12.0)
    assert len(truth["frames"]) == 48 and [f["index"] for f in truth["frames"]] == list(range(48))
    decoded = list(iter_frames(synth_video.parent / "video.mp4"))
    assert len(decoded) == 48 and decoded[5][2].shape == (128, 160, 3)
    for f in truth["frames"]:
        for b in f["boxes"]:
            x, y, w, h = b["xywh_px"]
            assert 0 <= x and 0 <= y and x + w <= 160.01 and y + h <= 128.01 and w > 0 and h > 0
            assert b["visible_fraction"] >= truth["visible_fraction"]
        assert ("polyp" in f["labels"]) == bool(f["boxes"])


def test_polyps_enter_and_leave_and_the_inset_changes(synth_video):
    truth = json.loads(synth_video.read_text())
    present = ["polyp" in f["labels"] for f in truth["frames"]]
    runs = episodes(present)
    assert runs and not present[0], "the video starts on plain mucosa, then a polyp enters"
    assert any(end < len(present) for _, end in runs), "a polyp leaves the view"
    assert len({b["id"] for f in truth["frames"] for b in f["boxes"]}) == 2
    states = [f["inset"]["state"] for f in truth["frames"]]
    assert len(set(states)) >= 2 and sum(a != b for a, b in zip(states, states[1:])) == 2
    assert any(f["blur_px"] > 0 for f in truth["frames"])


def test_same_seed_same_frames_other_seed_other_frames():
    world = synthetic_world(1, (128, 96))
    a = list(render_frames(world, 1, 6, 10.0, (128, 96)))
    b = list(render_frames(synthetic_world(1, (128, 96)), 1, 6, 10.0, (128, 96)))
    assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b))
    c = list(render_frames(synthetic_world(2, (128, 96)), 2, 6, 10.0, (128, 96)))
    assert not np.array_equal(a[0][0], c[0][0])


def test_strip_world_moves_boxes_along():
    frames = [np.zeros((100, 80, 3), np.uint8), np.zeros((50, 60, 3), np.uint8)]
    world = strip_world(frames, [[{"class": "polyp", "xywh_px": [10, 20, 30, 40]}],
                                 [{"class": "polyp", "xywh_px": [0, 0, 30, 25]}]], height_px=100)
    assert world.pixels.shape == (100, 80 + 120, 3)
    assert world.objects[0]["xywh_px"] == [10, 20, 30, 40]
    assert world.objects[1]["xywh_px"] == [80, 0, 60, 50]  # second frame scaled x2, shifted by the first's width


@pytest.mark.parametrize("kwargs", [{"n_frames": 1}, {"fps": 0}, {"frame_size_px": (65, 64)},
                                    {"frame_size_px": (32, 32)}, {"n_polyps": 9}])
def test_bad_arguments_are_named(tmp_path, kwargs):
    with pytest.raises(VideoSynthError, match="synthesize_video"):
        synthesize_video(tmp_path, **kwargs)


def test_unreadable_videos_are_named(tmp_path):
    with pytest.raises(VideoError, match="no such video"):
        probe_video(tmp_path / "missing.mp4")
    bad = tmp_path / "notavideo.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(VideoError, match="notavideo.mp4"):
        list(iter_frames(bad))


def test_every_and_seek(synth_video):
    video = synth_video.parent / "video.mp4"
    every3 = [i for i, _, _ in iter_frames(video, every=3)]
    assert every3 == list(range(0, 48, 3))
    window = list(iter_frames(video, every=2, start_s=1.0, end_s=2.0))
    assert [i for i, _, _ in window] == list(range(12, 24, 2))
    assert window[0][1] == pytest.approx(1.0)
    full = {i: rgb for i, _, rgb in iter_frames(video)}
    assert np.array_equal(window[0][2], full[12])  # seeking lands on the frame itself


def _world_video(ds, root, out, n_images=3):
    from kvasir_ml.video.synth import canonical_world

    world = canonical_world(ds, root, n_images, height_px=256)
    truth = json.loads(synthesize_video(out, seed=0, n_frames=30, frame_size_px=(224, 192), world=world).read_text())
    return world, truth


def test_pan_and_zoom_over_still_frames_moves_their_boxes(synth_dir, tmp_path):
    from kvasir_ml.data.coco import load_canonical

    ds = load_canonical(synth_dir / "annotations.coco.json")
    world, truth = _world_video(ds, synth_dir, tmp_path)
    assert len(world.objects) >= 3 and world.pixels.shape[0] == 256
    seen = {b["id"] for f in truth["frames"] for b in f["boxes"]}
    assert seen and seen <= {o["id"] for o in world.objects}
    assert probe_video(tmp_path / "video.mp4").n_frames == 30


@pytest.mark.realdata
def test_pan_and_zoom_over_real_kvasir_seg_frames(shared_data, tmp_path):
    from kvasir_ml.data.coco import CanonicalDataset

    seg = shared_data / "kvasir-seg"
    boxes = json.loads((seg / "kavsir_bboxes.json").read_text())
    ds = CanonicalDataset.new("kvasir-seg")
    for stem, entry in list(boxes.items())[:3]:  # the box file's own pixels, as the indexer reads it
        iid = ds.add_image(f"images/{stem}.jpg", entry["width"], entry["height"], ["polyp"], "kvasir-seg", "polyp")
        for b in entry["bbox"]:
            ds.add_box(iid, "polyp", [b["xmin"], b["ymin"], b["xmax"] - b["xmin"], b["ymax"] - b["ymin"]])
    world, truth = _world_video(ds, seg, tmp_path)
    assert len(world.objects) >= 3
    seen = {b["id"] for f in truth["frames"] for b in f["boxes"]}
    assert seen and seen <= {o["id"] for o in world.objects}  # real boxes, moved along with the pan
