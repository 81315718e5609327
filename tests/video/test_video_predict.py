"""``video predict`` end to end with tiny trained models (slow: the fixture trains both)."""

from __future__ import annotations

import json

import pytest

from kvasir_ml.video.io import probe_video

pytestmark = pytest.mark.slow


def test_predict_writes_log_video_timeline_and_summary(tiny_models, synth_video, tmp_path):
    from kvasir_ml.config import TrackingConfig
    from kvasir_ml.video.evaluate import evaluate_video
    from kvasir_ml.video.predict import predict_video

    classifier, detector = tiny_models
    out = tmp_path / "pred"
    summary = predict_video(synth_video.parent / "video.mp4", out, classifier, detector, every=2, batch_frames=4,
                            device="cpu", progress=False, tracking=TrackingConfig(mode="offline"))
    lines = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [e["frame"] for e in lines] == list(range(0, 48, 2))
    first = lines[0]
    assert set(first) >= {"time_s", "inset", "labels", "smoothed", "alerts", "predicted_labels", "boxes"}
    assert all(0.0 <= v <= 1.0 for v in first["labels"].values())
    assert all("track_id" in b for e in lines for b in e["boxes"])
    assert probe_video(out / "annotated.mp4").n_frames == 24
    assert (out / "timeline.png").stat().st_size > 5000
    assert summary["frames_processed"] == 24 and set(summary["stage_ms_per_frame"]) == {
        "decode", "inference", "tracking", "encode"}
    assert list((out / "wandb").rglob("*.wandb")), "the offline W&B run was written"
    scores = evaluate_video(out / "frames.jsonl", synth_video)
    assert scores["frames_scored"] == 24 and scores["mot"]["num_frames"] == 24


def test_cli_predict_and_evaluate(tiny_models, synth_video, tmp_path):
    from kvasir_ml.cli import main

    classifier, detector = tiny_models
    out = tmp_path / "cli"
    video = synth_video.parent / "video.mp4"
    assert main(["video", "predict", str(video), "--classifier", str(classifier), "--detector", str(detector),
                 "--out", str(out), "--every", "4", "--no-video", "--tracking-mode", "disabled",
                 "--device", "cpu"]) == 0
    assert not (out / "annotated.mp4").exists() and (out / "frames.jsonl").is_file()
    assert main(["video", "evaluate", str(out / "frames.jsonl"), str(synth_video), "--out", str(out / "eval.json")]) == 0
    assert json.loads((out / "eval.json").read_text())["frames_scored"] == 12


def test_decoding_in_a_thread_where_workers_cannot_fork_gives_the_same_log(tiny_models, synth_video, tmp_path,
                                                                           monkeypatch):
    """Off Linux (no forked worker: the classifier's input function is a closure) decoding runs
    in a thread of this process; the frame log equals the worker path's."""
    from types import SimpleNamespace

    from kvasir_ml.video import predict as vp

    classifier, detector = tiny_models
    video = synth_video.parent / "video.mp4"

    def log(folder):
        vp.predict_video(video, folder, classifier, detector, every=3, batch_frames=4, device="cpu", progress=False,
                         annotate=False)
        return [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]

    forked = log(tmp_path / "forked")
    monkeypatch.setattr(vp, "sys", SimpleNamespace(platform="darwin"))
    threaded = log(tmp_path / "threaded")
    assert [e["frame"] for e in threaded] == [e["frame"] for e in forked] == list(range(0, 48, 3))
    for a, b in zip(threaded, forked):
        assert a["labels"] == pytest.approx(b["labels"], abs=1e-5)
        assert [x["xywh_px"] for x in a["boxes"]] == pytest.approx([x["xywh_px"] for x in b["boxes"]], abs=1e-3)


def test_a_decode_error_mid_video_is_raised_not_a_hang(tiny_models, synth_video, tmp_path, monkeypatch):
    """The decode process fails after its first batch: predict_video raises that error (and
    leaves no annotated MP4 under its real name) instead of waiting for frames forever."""
    from kvasir_ml.video import predict as vp

    classifier, detector = tiny_models
    real_iter = vp._DecodedBatches.__iter__

    def one_batch_then_fail(self):
        items = real_iter(self)
        yield next(items)
        raise RuntimeError("frame 4: corrupt packet (planted)")

    monkeypatch.setattr(vp._DecodedBatches, "__iter__", one_batch_then_fail)
    with pytest.raises(RuntimeError, match="corrupt packet"):
        vp.predict_video(synth_video.parent / "video.mp4", tmp_path / "pred", classifier, detector, batch_frames=4,
                         device="cpu", progress=False)
    assert not (tmp_path / "pred" / "annotated.mp4").exists()


@pytest.mark.parametrize("fail_at_frame", [0, 9])
def test_an_encoder_error_is_raised_not_a_hang(tiny_models, synth_video, tmp_path, monkeypatch, fail_at_frame):
    """The annotated MP4's encoder fails (at the first frame, or mid-video with every decode slot
    taken: 12 batches of 4 frames against 4 slots): predict_video raises its error, stops the
    decode process and leaves no annotated.mp4."""
    from kvasir_ml.video import render

    classifier, detector = tiny_models
    real_annotate, calls = render.annotate_frame, []

    def failing_annotate(rgb, entry):
        calls.append(entry["frame"])
        if len(calls) > fail_at_frame:
            raise OSError("disk full (planted)")
        return real_annotate(rgb, entry)

    monkeypatch.setattr(render, "annotate_frame", failing_annotate)
    from kvasir_ml.video.predict import predict_video

    with pytest.raises(OSError, match="disk full"):
        predict_video(synth_video.parent / "video.mp4", tmp_path / "pred", classifier, detector, batch_frames=4,
                      device="cpu", progress=False)
    assert not list((tmp_path / "pred").glob("annotated*.mp4"))
