"""End-to-end classifier runs on tiny synthetic data (CPU, resnet18, 64 px)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from kvasir_ml.cli import main as cli_main
from kvasir_ml.evaluation.calibration import ece_summary
from kvasir_ml.train.checkpoint import load_checkpoint
from kvasir_ml.train.config import load_classifier_config
from kvasir_ml.train.run import RunDirError, train_classifier

REPO = Path(__file__).resolve().parents[2]
ML_TINY = REPO / "configs" / "classifier_multilabel_tiny.yaml"
SL_TINY = REPO / "configs" / "classifier_singlelabel_tiny.yaml"
REQUIRED_TEST_KEYS = ("macro_ap", "micro_ap", "macro_f1", "subset_accuracy", "hamming_loss", "top1", "mcc",
                      "singlelabel_macro_f1", "per_class", "confusion")


@pytest.fixture(scope="module")
def tiny_overrides(synth_dir, tmp_path_factory) -> list[str]:
    """Shared synthetic data and image cache; 3 short epochs, no tracking."""
    cache = tmp_path_factory.mktemp("clf-cache")
    return [f"data.canonical={synth_dir / 'annotations.coco.json'}", f"data.cache_dir={cache}",
            "optim.epochs=3", "tracking.mode=disabled"]


@pytest.fixture(scope="module")
def ml_run(tiny_overrides, tmp_path_factory) -> Path:
    """The multi-label tiny config, through the real CLI (branch inset mode)."""
    out = tmp_path_factory.mktemp("ml") / "run"
    rc = cli_main(["train", "classifier", "--config", str(ML_TINY), "--out", str(out), *tiny_overrides])
    assert rc == 0
    return out


def _chance_macro_ap(metrics: dict) -> float:
    """Expected AP of random scores = prevalence, averaged over labels with a positive."""
    per = metrics["per_class"]
    return float(np.mean([v["support"] / metrics["n_images"] for v in per.values() if v["support"] > 0]))


def test_cli_run_writes_metrics_with_required_keys(ml_run):
    metrics = json.loads((ml_run / "metrics.json").read_text())
    assert metrics["kind"] == "classifier" and metrics["task"] == "multilabel"
    assert metrics["inset_mode"] == "branch" and metrics["model"] == "resnet18"
    for key in REQUIRED_TEST_KEYS:
        assert key in metrics["test"], key
        assert key in metrics["val"], key
    assert metrics["test"]["label_scores_from"] == "model"
    assert metrics["test"]["class_proba_from"] == "decoder-fitted-on-val"  # cross-evaluation
    assert {"epoch", "train_loss", "val_macro_ap", "img_s", "data_time_s", "step_time_s"} <= set(metrics["history"][0])
    for name in ("config.yaml", "split.json", "checkpoints/best.pt", "checkpoints/last.pt",
                 "plots/confusion.png", "plots/pr_curves.png", "plots/top_losses.png", "plots/reliability.png"):
        assert (ml_run / name).is_file(), name


def test_multilabel_learns(ml_run):
    metrics = json.loads((ml_run / "metrics.json").read_text())
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]
    assert metrics["test"]["macro_ap"] > _chance_macro_ap(metrics["test"]) + 0.05


def test_thresholds_tuned_on_val_are_in_checkpoint(ml_run):
    metrics = json.loads((ml_run / "metrics.json").read_text())
    best = load_checkpoint(ml_run / "checkpoints" / "best.pt")
    assert best["label_names"] == metrics["label_names"]
    assert len(best["thresholds"]) == len(best["label_names"])
    assert metrics["test"]["thresholds"] == pytest.approx(best["thresholds"])
    assert metrics["test"]["thresholds_tuned_on"] == "given"
    assert metrics["thresholds_tuned_on"] == "val"
    assert best["split_sha256"] == metrics["split_sha256"] == json.loads((ml_run / "split.json").read_text())["sha256"]
    assert "optimizer" not in best
    # calibration and decoder fitted on val travel with the thresholds
    assert len(best["calibration"]["temperatures"]) == len(best["label_names"])
    assert best["decoder"]["class_names"] == best["class_names"]
    test = metrics["test"]
    assert test["ece"] == test["calibration"]["after"]["macro_ece"] and test["ece_uncalibrated"] is not None
    assert test["top1_ceiling_multilabel"] == 1.0  # no two Kvasir v2 classes share a label set
    # the saved predictions are the calibrated, decoded scores the metrics were computed from
    with np.load(ml_run / "predictions_test.npz") as npz:
        y, scores, proba, y_class = npz["y_labels"], npz["label_scores"], npz["class_proba"], npz["y_class"]
    assert ece_summary(y, scores, best["label_names"])["macro_ece"] == pytest.approx(test["ece"])
    scored = y.sum(axis=0) > 0
    pred = scores >= np.asarray(test["thresholds"])
    assert f1_score(y[:, scored], pred[:, scored], average="macro", zero_division=0) == pytest.approx(test["macro_f1"])
    keep = y_class >= 0
    assert float(np.mean(proba[keep].argmax(1) == y_class[keep])) == pytest.approx(test["top1"])
    last = load_checkpoint(ml_run / "checkpoints" / "last.pt")
    assert {"optimizer", "scheduler", "rng", "versions", "epoch"} <= set(last)
    assert last["epoch"] == 3


def test_predict_from_checkpoint(ml_run, synth_dir):
    from kvasir_ml.inference.combined import predict_images

    images = sorted((synth_dir / "images").glob("*.jpg"))[:3]
    out = predict_images(images, classifier_ckpt=ml_run / "checkpoints" / "best.pt", device="cpu")
    best = load_checkpoint(ml_run / "checkpoints" / "best.pt")
    assert len(out) == 3
    for entry in out:
        assert set(entry["labels"]) == set(best["label_names"])
        assert all(0.0 <= s <= 1.0 for s in entry["labels"].values())
        assert set(entry["predicted_labels"]) <= set(best["label_names"])
        assert entry["source_class"]["name"] in best["class_names"]
        assert entry["inset"]["state"] in ("green", "black", "none")
    # predict_images hands its measured insets to the classifier; the classifier called on its
    # own decode and inset detection must give the same scores (to float32 rounding: on a CPU the
    # predictor may cut the batch into lanes, and a forward's sums run in another order per batch size)
    from kvasir_ml.data.images import load_rgb
    from kvasir_ml.data.inset import detect_inset
    from kvasir_ml.train.classify import classify_arrays, load_classifier

    rgbs = [load_rgb(p) for p in images]
    cpu = torch.device("cpu")
    again = classify_arrays(load_classifier(ml_run / "checkpoints" / "best.pt", cpu), rgbs,
                            [detect_inset(rgb) for rgb in rgbs], cpu)
    assert [a["labels"] for a in again] == [pytest.approx(entry["labels"], rel=1e-5, abs=1e-6) for entry in out]


def test_predict_decodes_each_image_once_and_sees_the_training_pixels(ml_run, synth_dir, tmp_path, monkeypatch):
    """Inset, classifier and detector share one decode per image; the classifier's square input
    is exactly what the training cache holds for that image."""
    from kvasir_ml.data import images as images_mod
    from kvasir_ml.data.cache import ImageCache, square_from_rgb
    from kvasir_ml.data.images import load_rgb
    from kvasir_ml.inference.combined import predict_images

    images = sorted((synth_dir / "images").glob("*.jpg"))[:4]
    opened = []
    real_open = images_mod._opened
    monkeypatch.setattr(images_mod, "_opened", lambda path, failure, data=None: opened.append(path) or real_open(path, failure, data))
    predict_images(images, classifier_ckpt=ml_run / "checkpoints" / "best.pt", device="cpu")
    assert sorted(map(str, opened)) == sorted(map(str, images))  # once each, nothing else
    monkeypatch.undo()
    cache = ImageCache(tmp_path / "cache", 64)
    for path in images:
        np.testing.assert_array_equal(cache.get(path), square_from_rgb(load_rgb(path), 64))


def test_eval_reproduces_the_runs_metrics_and_scores_other_data(ml_run, synth_dir, tmp_path):
    """`kvasir-ml eval` on the run's own split gives its test and val blocks number for number;
    with --data it scores every image of another file under "all"."""
    run = json.loads((ml_run / "metrics.json").read_text())
    best = str(ml_run / "checkpoints" / "best.pt")
    assert cli_main(["eval", best, "--out", str(tmp_path / "test")]) == 0
    ev = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert ev["test"] == run["test"] and "val" not in ev
    for key in ("kind", "task", "model", "inset_mode", "split_sha256", "best_epoch", "label_names", "ground_truth",
                "selection", "history"):
        assert ev[key] == run[key], key
    ours, theirs = np.load(tmp_path / "test" / "predictions_test.npz"), np.load(ml_run / "predictions_test.npz")
    for key in theirs.files:
        np.testing.assert_array_equal(ours[key], theirs[key])
    assert cli_main(["eval", best, "--out", str(tmp_path / "val"), "--subset", "val"]) == 0
    assert json.loads((tmp_path / "val" / "metrics.json").read_text())["val"] == run["val"]
    other = tmp_path / "all"
    assert cli_main(["eval", best, "--out", str(other), "--data", str(synth_dir / "annotations.coco.json")]) == 0
    ev = json.loads((other / "metrics.json").read_text())
    assert ev["evaluated"]["subset"] == "all" and ev["n_images"] == {"all": 64} and ev["split_sha256"] is None
    assert set(REQUIRED_TEST_KEYS) <= set(ev["all"])
    assert cli_main(["eval", best, "--out", str(other)]) == 2  # a used --out is refused, not overwritten


def test_existing_run_dir_is_refused(ml_run):
    cfg = load_classifier_config(ML_TINY, ["tracking.mode=disabled"])
    with pytest.raises(RunDirError, match="not empty"):
        train_classifier(cfg, ml_run)


def test_singlelabel_learns_and_is_cross_evaluated(tiny_overrides, tmp_path):
    cfg = load_classifier_config(SL_TINY, tiny_overrides)
    run = train_classifier(cfg, tmp_path / "sl")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "singlelabel" and metrics["inset_mode"] == "masked"
    for key in REQUIRED_TEST_KEYS:
        assert key in metrics["test"], key
    assert metrics["test"]["label_scores_from"] == "class-proba-through-taxonomy"
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]
    assert metrics["test"]["macro_ap"] > _chance_macro_ap(metrics["test"]) + 0.05
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert len(best["class_names"]) == 8


def test_resume_equals_uninterrupted(tiny_overrides, tmp_path):
    overrides = [*tiny_overrides, "optim.epochs=2", "model.inset_mode=masked"]
    cfg = load_classifier_config(ML_TINY, overrides)
    full = train_classifier(cfg, tmp_path / "full")
    killed = train_classifier(cfg, tmp_path / "resumed", stop_after_epoch=1)
    assert not (killed / "metrics.json").exists()
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["epoch"] == 1
    resumed = train_classifier(cfg, killed, resume=True)
    a = load_checkpoint(full / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    ma = json.loads((full / "metrics.json").read_text())
    mb = json.loads((resumed / "metrics.json").read_text())
    assert ma["test"] == mb["test"] and ma["val"] == mb["val"]
    strip = ("img_s", "data_time_s", "step_time_s")
    assert [{k: v for k, v in h.items() if k not in strip} for h in ma["history"]] == \
        [{k: v for k, v in h.items() if k not in strip} for h in mb["history"]]
