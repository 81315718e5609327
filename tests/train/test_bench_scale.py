"""bench_scale's bookkeeping: stage selection and the per-image / CPU ratios (no stage is run)."""

from __future__ import annotations

import pytest

from kvasir_ml.train.bench_scale import measure_size, summarize


def _size(n, stages):
    return {"n": n, "stages": {name: dict(zip(("seconds", "per_image_ms", "cpu_per_image_ms", "peak_rss_mb"), v),
                                          **extra) for name, (v, extra) in stages.items()}}


def test_summarize_reports_wall_and_cpu_ratios_of_the_measured_stages_only():
    small = _size(1000, {"cache": ((4.0, 4.0, 2.0, 800.0), {}),
                         "loader": ((2.0, 0.1, 0.05, 800.0), {"timed_epochs": 20})})
    large = _size(5000, {"cache": ((30.0, 6.0, 2.2, 800.0), {}),
                         "loader": ((2.4, 0.12, 0.1, 800.0), {"timed_epochs": 4})})
    out = summarize([small, large], 10_000, None)
    assert out["per_image_ratio_largest_over_smallest"] == {"cache": 1.5, "loader": 1.2}
    assert out["cpu_per_image_ratio_largest_over_smallest"] == {"cache": 1.1, "loader": 2.0}
    assert out["flat_within_1_5x"] == {"cache": True, "loader": True}
    # the loader extrapolates one epoch: 0.1 s at 1k, 0.6 s at 5k -> 1.225 s at 10k
    assert out["extrapolated"]["stages"]["loader"]["seconds"] == pytest.approx(1.2, abs=0.05)
    assert out["extrapolated"]["stages"]["cache"]["seconds"] == pytest.approx(62.5, abs=0.1)


def test_measure_size_rejects_an_unknown_stage(tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        measure_size(10, tmp_path, stages=("cache", "decode"))
