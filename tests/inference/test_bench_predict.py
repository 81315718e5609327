"""``scripts/bench_predict.py``'s measurement: every repeat streams a fresh output, and the
reported run is the median one (its figures, not a mix of runs)."""

from __future__ import annotations

from kvasir_ml.inference.bench import predict_throughput, untrained_checkpoint, write_frames


def test_repeats_stream_a_fresh_file_each_and_report_the_median_run(tmp_path):
    ckpt = untrained_checkpoint(tmp_path / "u.pt", "resnet18", 32)
    images = write_frames(tmp_path / "frames", 12, width_px=96, height_px=80)
    res = predict_throughput(ckpt, images, tmp_path / "out.jsonl", "cpu", workers=0, batch=4, repeats=3)
    assert res["repeats"] == 3 and len(res["ratios"]) == 3
    assert res["ratio"] == sorted(res["ratios"])[1]
    assert [r["ratio"] for r in res["runs"]] == res["ratios"] and all(r["stream_img_s"] > 0 for r in res["runs"])
    assert res["n_lines"] == res["n_images"] == 12 and res["n_failed"] == 0  # not appended to, not resumed
    assert res["ratio"] == round(res["stream_img_s"] / res["bare_img_s"], 3) or abs(
        res["ratio"] - res["stream_img_s"] / res["bare_img_s"]) < 0.01
