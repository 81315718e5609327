"""A video task round trip through the real Label Studio: push a synthetic video with its tracks
as VideoRectangle keyframes, correct one keyframe as an annotator would (through the API), pull
the per-frame boxes and still frames back."""

from __future__ import annotations

import json
import shutil

import pytest

from kvasir_ml.data.coco import load_canonical
from kvasir_ml.labelstudio.video_sync import pull_videos, push_video
from kvasir_ml.labelstudio.video_tracks import VideoFrame, check_sequence, per_frame_boxes_px
from kvasir_ml.video.io import probe_video, video_fourcc

pytestmark = pytest.mark.labelstudio

FPS, N_FRAMES, SIZE = 12.0, 36, (160, 128)


@pytest.fixture(scope="module")
def pushed_video(ls_data_root):
    """A 3 s synthetic video under the server's document root and a frames.jsonl whose track ids
    are the ground truth's object ids (what `video predict` writes for a perfect tracker)."""
    from kvasir_ml.video.synth import synthesize_video

    folder = ls_data_root / "lsvideo"
    truth = json.loads(synthesize_video(folder, seed=4, n_frames=N_FRAMES, fps=FPS, frame_size_px=SIZE).read_text())
    frames = folder / "frames.jsonl"
    frames.write_text("".join(json.dumps({"frame": f["index"], "time_s": f["time_s"], "boxes": [
        {"class": b["class"], "score": 0.9, "xywh_px": b["xywh_px"], "track_id": b["id"]} for b in f["boxes"]]}) + "\n"
        for f in truth["frames"]))
    return folder / "video.mp4", frames, truth


def test_video_task_round_trip_with_a_corrected_keyframe(ls_client, ls_data_root, pushed_video, tmp_path):
    video_path, frames_path, truth = pushed_video
    video = VideoFrame(FPS, N_FRAMES, *SIZE)
    n_boxes = sum(len(f["boxes"]) for f in truth["frames"])
    assert n_boxes > 0, "the synthetic video should show a polyp"

    rep = push_video(ls_client, video_path, frames_path, ls_data_root, "video tasks", "gt-tracks")
    assert rep.created and rep.prediction_created and rep.n_boxes == n_boxes
    assert rep.n_tracks == len({b["id"] for f in truth["frames"] for b in f["boxes"]})
    assert rep.n_keyframes < n_boxes  # keyframes, not every frame
    # OpenCV wrote MPEG-4 Part 2, which browsers cannot play: the task shows a VP8 copy, frame for frame.
    assert rep.transcoded and rep.served == "lsvideo/video.mp4.browser.webm"
    assert video_fourcc(ls_data_root / rep.served) == "VP80"
    assert probe_video(ls_data_root / rep.served).n_frames == N_FRAMES
    task = ls_client.sdk.tasks.get(id=rep.task_id)
    assert task.data["source_video"] == "lsvideo/video.mp4" and task.data["n_frames"] == N_FRAMES
    again = push_video(ls_client, video_path, frames_path, ls_data_root, "video tasks", "gt-tracks")
    assert (again.task_id, again.created, again.prediction_created, again.transcoded) == (rep.task_id, False, False,
                                                                                          False)

    # The annotator moves one keyframe of the first track 10 % to the right and submits.
    sdk = ls_client.sdk
    preds = sdk.predictions.list(task=rep.task_id)
    assert len(preds) == 1 and preds[0].model_version == "gt-tracks"
    result = json.loads(json.dumps(preds[0].result))
    region = result[0]
    seq = region["value"]["sequence"]
    k = 1 if len(seq) > 2 else 0
    seq[k]["x"] = round(seq[k]["x"] + 10.0, 4)
    sdk.annotations.create(id=rep.task_id, result=result)

    # A second task whose annotation names a box class the taxonomy lacks: reported, not written.
    bad_video = ls_data_root / "lsvideo" / "copy.mp4"
    shutil.copyfile(video_path, bad_video)
    bad = push_video(ls_client, bad_video, frames_path, ls_data_root, "video tasks", "gt-tracks")
    bad_result = json.loads(json.dumps(preds[0].result))
    bad_result[0]["value"]["labels"] = ["tumour"]
    sdk.annotations.create(id=bad.task_id, result=bad_result)

    pulled = pull_videos(ls_client, "video tasks", tmp_path, data_root=ls_data_root, stills_every=6)
    assert [p.task_id for p in pulled.errors] == [bad.task_id]
    assert f"task {bad.task_id}, region {region['id']}: unknown box class 'tumour'" in pulled.errors[0].message
    log_path = tmp_path / "lsvideo" / "video.mp4.frames.jsonl"
    assert pulled.written == [str(log_path)]
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [e["frame"] for e in log] == list(range(N_FRAMES))

    tid = int(region["id"].split("-")[1])
    got = {e["frame"]: b["xywh_px"] for e in log for b in e["boxes"] if b["track_id"] == tid}
    moved = seq[k]["frame"] - 1
    original = {f["index"]: b["xywh_px"] for f in truth["frames"] for b in f["boxes"] if b["id"] == tid}
    # The corrected keyframe is where the annotator put it (10 % of 160 px = 16 px right of the track) ...
    assert got[moved][0] == pytest.approx(min(original[moved][0] + 16.0, SIZE[0]), abs=0.01 + 1.6)
    # ... the frames around it are interpolated linearly towards the neighbouring keyframes ...
    expected = per_frame_boxes_px(check_sequence(seq, video, "expected"), video)
    assert sorted(got) == sorted(expected) == sorted(original)
    for f, box in expected.items():
        assert got[f] == pytest.approx(box, abs=1e-3)
    nxt = seq[k + 1]["frame"] - 1
    if nxt - moved >= 2:
        mid = moved + (nxt - moved) // 2
        r = (mid - moved) / (nxt - moved)
        want_x = (seq[k]["x"] + (seq[k + 1]["x"] - seq[k]["x"]) * r) * SIZE[0] / 100
        assert got[mid][0] == pytest.approx(max(want_x, 0.0), abs=1e-3)
    # ... and every frame away from the corrected stretch is the tracked box within the 1 % tolerance.
    lo = seq[k - 1]["frame"] - 1 if k else moved
    for f, box in original.items():
        if not lo <= f <= nxt:
            assert max(abs(a - b) for a, b in zip(got[f], box)) <= 1.6 + 1e-3

    stills = load_canonical(pulled.stills)  # validates against the canonical schema
    assert pulled.n_stills == len(stills.images) == N_FRAMES // 6
    assert all((tmp_path / img["file_name"]).is_file() for img in stills.images)
    assert {img["video"] for img in stills.images} == {"lsvideo/video.mp4"}
    frames_kept = [img["frame"] for img in stills.images]
    assert frames_kept == list(range(0, N_FRAMES, 6))
    assert len(stills.annotations) == sum(len(log[f]["boxes"]) for f in frames_kept)


def test_cli_video_push_and_pull(ls_server, ls_client, ls_data_root, pushed_video, tmp_path, monkeypatch, capsys):
    from kvasir_ml.cli import main

    video_path, frames_path, truth = pushed_video
    clip = ls_data_root / "lsvideo-cli" / "clip.mp4"
    clip.parent.mkdir(exist_ok=True)
    shutil.copyfile(video_path, clip)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.token)
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    push = ["ls", "video", "push", str(clip), "--tracks", str(frames_path), "--data-root", str(ls_data_root),
            "--project", "video cli"]
    assert main(push) == 0
    assert main(push) == 0
    out = capsys.readouterr().out
    assert "(created)" in out and "(existed)" in out and "already there as model_version 'tracks-" in out
    assert main(["ls", "video", "pull", "--project", "video cli", "--out", str(tmp_path)]) == 0
    assert "no annotated video task" in capsys.readouterr().out
    task = ls_client.list_tasks(int(out.split("project ")[1].split(",")[0]))[0]
    pred = ls_client.sdk.predictions.list(task=task["id"])[0]
    ls_client.sdk.annotations.create(id=task["id"], result=pred.result)  # accepted as is
    assert main(["ls", "video", "pull", "--project", "video cli", "--out", str(tmp_path)]) == 0
    log = [json.loads(line) for line in (tmp_path / "lsvideo-cli" / "clip.mp4.frames.jsonl").read_text().splitlines()]
    for entry, frame in zip(log, truth["frames"]):  # accepted tracks = the tracked boxes within 1 % (1.6 px)
        got = {b["track_id"]: b["xywh_px"] for b in entry["boxes"]}
        want = {b["id"]: b["xywh_px"] for b in frame["boxes"]}
        assert got.keys() == want.keys(), entry["frame"]
        assert all(max(abs(a - b) for a, b in zip(got[k], want[k])) <= 1.6 + 1e-3 for k in want)
