"""Slower classifier checks: every task x inset mode learns; a real-data smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kvasir_ml.train.config import load_classifier_config
from kvasir_ml.train.run import train_classifier

REPO = Path(__file__).resolve().parents[2]


def _chance_macro_ap(metrics: dict) -> float:
    per = metrics["per_class"]
    return float(np.mean([v["support"] / metrics["n_images"] for v in per.values() if v["support"] > 0]))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multilabel", "singlelabel"])
@pytest.mark.parametrize("mode", ["raw", "masked", "branch"])
def test_every_task_and_inset_mode_learns(task, mode, synth_dir, tmp_path):
    cfg = load_classifier_config(REPO / "configs" / f"classifier_{task}_tiny.yaml", [
        f"data.canonical={synth_dir / 'annotations.coco.json'}", f"model.inset_mode={mode}",
        "optim.epochs=3", "tracking.mode=disabled"])
    metrics = json.loads((train_classifier(cfg, tmp_path / "run") / "metrics.json").read_text())
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]
    assert metrics["test"]["macro_ap"] > _chance_macro_ap(metrics["test"]) + 0.05
    assert metrics["inset_mode"] == mode and metrics["task"] == task


@pytest.mark.slow
@pytest.mark.realdata
def test_real_kvasir_v2_samples_smoke(shared_data, tmp_path):
    from kvasir_ml.data import sources

    root = shared_data / "kvasir-v2-samples"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    result = sources.index_kvasir_v2(root, workers=1)
    canonical = tmp_path / "kvasir-v2-samples.coco.json"
    result.dataset.save(canonical)
    cfg = load_classifier_config(REPO / "configs" / "classifier_multilabel_tiny.yaml", [
        f"data.canonical={canonical}", f"data.root={root}", "data.fractions=[0.5,0.25,0.25]",
        "optim.epochs=1", "runtime.batch_size=8", "tracking.mode=disabled"])
    metrics = json.loads((train_classifier(cfg, tmp_path / "run") / "metrics.json").read_text())
    assert metrics["dataset"] == "kvasir-v2"
    assert sum(metrics["n_images"].values()) == len(result.dataset.images)
    assert 0.0 <= metrics["test"]["top1"] <= 1.0 and 0.0 < metrics["test"]["macro_ap"] <= 1.0
