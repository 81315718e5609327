"""Checkpoint selection rules (eval.select) and test-time augmentation (eval.tta)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kvasir_ml.train.checkpoint import load_checkpoint
from kvasir_ml.train.config import load_classifier_config
from kvasir_ml.train.classify import load_classifier
from kvasir_ml.train.prepare import make_loaders, prepare_data
from kvasir_ml.train.report import SELECTION_RULES, selection_score, tune_on_val
from kvasir_ml.train.run import train_classifier
from kvasir_ml.train.tta import dihedral_views, evaluate_tta

REPO = Path(__file__).resolve().parents[2]
ML_TINY = REPO / "configs" / "classifier_multilabel_tiny.yaml"


def _best(rule: str, history: list[dict]) -> int:
    best, epoch = -float("inf"), None
    for entry in history:
        score = selection_score(rule, entry)
        if score > best:
            best, epoch = score, entry["epoch"]
    return epoch


def test_selection_rules():
    history = [{"epoch": 1, "val_loss": 0.9, "val_macro_ap": 0.5}, {"epoch": 2, "val_loss": 0.4, "val_macro_ap": 0.7},
               {"epoch": 3, "val_loss": 0.6, "val_macro_ap": 0.8}]
    assert _best("last", history) == 3
    assert _best("val_loss", history) == 2
    assert _best("val_macro_ap", history) == 3
    assert set(SELECTION_RULES) == {"last", "val_loss", "val_macro_ap"}
    with pytest.raises(ValueError, match="selection rule"):
        selection_score("val_top1", history[0])


def test_dihedral_views_are_the_eight_symmetries_of_the_square():
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    views = dihedral_views(image)
    assert len(views) == 8 and len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert torch.equal(views[0], image)


class _CornerModel(nn.Module):
    """Not rotation invariant: logits from the top-left pixel, plus the branch input untouched."""

    def forward(self, image, inset=None, inset_state=None):
        out = image[:, :, 0, 0].float() / 255.0
        return out + (0 if inset_state is None else inset_state.sum(1, keepdim=True))


def test_tta_is_the_mean_of_the_view_probabilities_and_leaves_the_inset_alone():
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randint(0, 256, (3, 2, 6, 6), dtype=torch.uint8, generator=g),
             "inset_state": torch.eye(3)}
    got = evaluate_tta(_CornerModel(), [batch], torch.device("cpu"), "multilabel", amp=False)
    views = dihedral_views(batch["image"])
    want = torch.stack([torch.sigmoid(_CornerModel()(v, inset_state=batch["inset_state"])) for v in views]).mean(0)
    assert np.allclose(got, want.double().numpy())
    plain = torch.sigmoid(_CornerModel()(batch["image"], inset_state=batch["inset_state"])).double().numpy()
    assert not np.allclose(got, plain)


def test_val_loss_selection_and_tta_in_a_real_run(synth_dir, tmp_path):
    overrides = [f"data.canonical={synth_dir / 'annotations.coco.json'}", f"data.cache_dir={tmp_path / 'cache'}",
                 "optim.epochs=3", "data.image_size_px=32", "tracking.mode=disabled", "model.inset_mode=masked",
                 "eval.select=val_loss", "eval.tta=true"]
    run = train_classifier(load_classifier_config(ML_TINY, overrides), tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    want = min(metrics["history"], key=lambda h: h["val_loss"])["epoch"]
    assert metrics["selection"]["rule"] == "val_loss" and metrics["selection"]["epoch"] == want
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["epoch"] == want and best["select"] == "val_loss"
    assert best["best_score"] == pytest.approx(-min(h["val_loss"] for h in metrics["history"]))
    with np.load(run / "predictions_test_tta.npz") as tta, np.load(run / "predictions_test.npz") as plain:
        assert list(tta["file_names"]) == list(plain["file_names"])
        assert not np.allclose(tta["label_scores"], plain["label_scores"])
    # the TTA rows' thresholds (and calibration) come from the TTA outputs of VAL, not the single view's
    assert metrics["test_tta"]["posthoc_fitted_on"] == "val-tta"
    assert metrics["test_tta"]["thresholds"] == metrics["val_tta"]["thresholds"]
    cfg, cpu = load_classifier_config(ML_TINY, overrides), torch.device("cpu")
    data = prepare_data(cfg, run, may_write=False)
    model, _, _ = load_classifier(run / "checkpoints" / "best.pt", cpu)
    val_tta = evaluate_tta(model, make_loaders(cfg, data, cpu)[2]["val"], cpu, "multilabel", cfg.runtime.amp,
                           cfg.runtime.channels_last)
    post = tune_on_val("multilabel", val_tta, data)
    assert metrics["test_tta"]["thresholds"] == pytest.approx(post.thresholds.tolist())
    assert metrics["test_tta"]["calibration"]["calibration"]["temperatures"] == pytest.approx(
        post.calibration.temperatures.tolist())
