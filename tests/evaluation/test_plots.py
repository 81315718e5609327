"""Error-analysis plots write non-empty PNGs; top losses are ordered by per-image loss."""

from __future__ import annotations

import numpy as np
import pytest

from kvasir_ml.evaluation.plots import (
    plot_confusion,
    plot_pr_curves,
    plot_pr_overlay,
    plot_top_losses,
    top_loss_titles,
    top_losses,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["polyp", "dyed", "lifted", "z-line", "never-seen"]


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_MAGIC)


@pytest.fixture(scope="module")
def multilabel_data():
    rng = np.random.default_rng(0)
    y_true = (rng.random((40, len(NAMES))) < 0.4).astype(int)
    y_true[:, -1] = 0  # a class without positives gets no curve, only a legend note
    y_score = np.clip(0.5 * y_true + 0.6 * rng.random(y_true.shape), 0, 1)
    return y_true, y_score


def test_plot_confusion_writes_png(tmp_path):
    out = plot_confusion([[5, 1, 0], [2, 3, 1], [0, 0, 0]], ["a", "b", "c"], tmp_path / "plots" / "cm.png", "test")
    assert _is_png(out)


def test_plot_pr_curves_and_overlay_write_png(tmp_path, multilabel_data):
    y_true, y_score = multilabel_data
    assert _is_png(plot_pr_curves(y_true, y_score, NAMES, tmp_path / "pr.png", "val"))
    other = np.clip(y_score + 0.1, 0, 1)
    out = plot_pr_overlay({"multi": (y_true, y_score), "single": (y_true, other)}, NAMES, tmp_path / "ov.png",
                          title="multi vs single", ncols=3)
    assert _is_png(out)


def test_plot_top_losses_writes_png(tmp_path, multilabel_data):
    y_true, y_score = multilabel_data
    idx = top_losses(y_true, y_score, "multilabel", k=5)
    titles = top_loss_titles(y_true, y_score, "multilabel", idx, NAMES)
    images = [np.full((32, 48, 3), 40 * i, dtype=np.uint8) for i in range(len(idx))]
    assert _is_png(plot_top_losses(images, titles, tmp_path / "top.png", ncols=3))
    assert plot_top_losses([], [], tmp_path / "none.png").read_bytes().startswith(PNG_MAGIC)


def test_top_losses_orders_by_loss():
    y_true = np.array([[1, 0], [1, 0], [0, 1]])
    y_score = np.array([[0.9, 0.1], [0.2, 0.1], [0.5, 0.5]])
    assert top_losses(y_true, y_score, "multilabel", k=3).tolist() == [1, 2, 0]
    proba = np.array([[0.7, 0.3], [0.1, 0.9], [0.5, 0.5]])
    assert top_losses(np.array([0, 0, 1]), proba, "singlelabel", k=2).tolist() == [1, 2]
    titles = top_loss_titles(np.array([0, 0, 1]), proba, "singlelabel", [1], ["a", "b"])
    assert "true: a" in titles[0] and "b 0.90" in titles[0]
