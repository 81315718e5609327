"""Error-analysis plots (PNG): confusion matrix, PR curves, PR overlays, top losses, reliability.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, never
through pyplot: no global figure registry to leak (nothing to close), no display or
backend switch needed, and only the DejaVu font bundled with matplotlib is used, so
nothing is fetched. PNGs are written atomically (``kvasir_ml.io.atomic_write``); they are
run artefacts that a re-run overwrites.

``top_losses`` picks the images to show: per-image binary cross-entropy (summed over
labels) for the multi-label task, negative log-likelihood of the true class for the
single-label task; ``top_loss_titles`` writes the matching titles.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

from kvasir_ml.evaluation.classification import EPS, EvaluationError
from kvasir_ml.io import atomic_write

DPI = 100
# fits a 3.4-inch panel at the 7-pt title font used by plot_top_losses
TITLE_WIDTH_CHARS = 48


def _save(fig: Figure, path_png: str | Path) -> Path:
    FigureCanvasAgg(fig)  # attaches the Agg canvas to the figure
    path = Path(path_png)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight"))
    return path


def plot_confusion(confusion: Any, class_names: Sequence[str], path_png: str | Path, title: str = "") -> Path:
    """Confusion matrix with counts; colour = fraction of the true class (row-normalised).

    Args:
        confusion: (K, K) counts, rows = true class, columns = predicted.
        class_names: the K class names.
        path_png: output file.
        title: figure title.

    Returns:
        The PNG path.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    k = len(class_names)
    if counts.shape != (k, k):
        raise EvaluationError(f"plot_confusion {path_png}: expected a {k}x{k} matrix, got {counts.shape}")
    rows = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    side = 1.2 + 0.6 * k
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path_png)


def _pr_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(recall, precision, AP) of one class, or None when it has no positive."""
    if not np.any(y_true):
        return None
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    return recall, precision, float(average_precision_score(y_true, y_score))


def _as_pair(name: str, y_true: Any, y_score: Any, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_score.shape or y_true.shape[1] != n_labels:
        raise EvaluationError(f"{name}: expected y_true and y_score of shape (N, {n_labels}), "
                              f"got {y_true.shape} and {y_score.shape}")
    return y_true, y_score


def plot_pr_curves(y_true: Any, y_score: Any, label_names: Sequence[str], path_png: str | Path,
                   title: str = "") -> Path:
    """Per-class precision-recall curves on one axes, AP in the legend.

    Classes without a positive have no curve; the legend says so.

    Args:
        y_true: (N, C) 0/1 targets.
        y_score: (N, C) label scores.
        label_names: the C label names.
        path_png: output file.
        title: figure title.

    Returns:
        The PNG path.
    """
    y_true, y_score = _as_pair(f"plot_pr_curves {path_png}", y_true, y_score, len(label_names))
    fig = Figure(figsize=(8, 6))
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(label_names))]
    styles = ["-", "--", ":"]
    missing = []
    for c, name in enumerate(label_names):
        curve = _pr_curve(y_true[:, c], y_score[:, c])
        if curve is None:
            missing.append(name)
            continue
        recall, precision, ap = curve
        # 10 colours cycle; the line style tells classes c and c + 10 apart.
        ax.step(recall, precision, where="post", color=colours[c], linestyle=styles[(c // 10) % 3],
                label=f"{name} (AP {ap:.3f})")
    if missing:
        ax.plot([], [], " ", label=f"no positives: {', '.join(missing)}")
    _pr_axes(ax)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7)
    ax.set_title(title)
    return _save(fig, path_png)


def _pr_axes(ax: Any) -> None:
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)


def plot_pr_overlay(curves: dict[str, tuple[Any, Any]], label_names: Sequence[str], path_png: str | Path,
                    title: str = "", ncols: int = 4) -> Path:
    """Compare models: a grid with one axes per label, one PR curve per model in each.

    Labels without a positive for any model get no panel; the title lists them.

    Args:
        curves: {model name: (y_true (N, C), y_score (N, C))}; models may be scored on
            different image sets (each curve uses its own targets).
        label_names: the C label names.
        path_png: output file.
        title: figure title.
        ncols: grid columns.

    Returns:
        The PNG path.
    """
    if not curves:
        raise EvaluationError(f"plot_pr_overlay {path_png}: no models given")
    pairs = {m: _as_pair(f"plot_pr_overlay {path_png} [{m}]", t, s, len(label_names)) for m, (t, s) in curves.items()}
    # A label no model has a positive for would be an empty panel: name it in the title.
    shown = [c for c in range(len(label_names)) if any(np.any(t[:, c]) for t, _ in pairs.values())]
    empty = [label_names[c] for c in range(len(label_names)) if c not in shown]
    panels = max(1, len(shown))
    ncols = max(1, min(ncols, panels))
    nrows = math.ceil(panels / ncols)
    fig = Figure(figsize=(3.2 * ncols, 3.0 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for slot, c in enumerate(shown):
        name = label_names[c]
        ax = axes[slot // ncols][slot % ncols]
        for i, (model, (y_true, y_score)) in enumerate(pairs.items()):
            curve = _pr_curve(y_true[:, c], y_score[:, c])
            if curve is None:
                ax.plot([], [], " ", label=f"{model}: no positives")
                continue
            recall, precision, ap = curve
            ax.step(recall, precision, where="post", color=f"C{i % 10}", label=f"{model} ({ap:.3f})")
        _pr_axes(ax)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6, loc="lower left")
    for slot in range(len(shown), nrows * ncols):
        axes[slot // ncols][slot % ncols].set_visible(False)
    note = textwrap.fill(f"no positives: {', '.join(empty)}", 30 * ncols, break_on_hyphens=False) if empty else ""
    if title or note:
        fig.suptitle("\n".join(filter(None, [title, note])), fontsize=10)
    fig.tight_layout()
    return _save(fig, path_png)


def plot_top_losses(images: Sequence[np.ndarray], titles: Sequence[str], path_png: str | Path,
                    ncols: int = 4) -> Path:
    """A grid of images with one title each (true labels, scores, loss).

    Args:
        images: HxWx3 uint8 arrays (sizes may differ).
        titles: one title per image (see ``top_loss_titles``).
        path_png: output file.
        ncols: grid columns.

    Returns:
        The PNG path.
    """
    if len(images) != len(titles):
        raise EvaluationError(f"plot_top_losses {path_png}: need as many titles as images, "
                              f"got {len(images)} images and {len(titles)} titles")
    if not images:  # still write the artefact, so a run folder always has the same files
        fig = Figure(figsize=(4, 1))
        fig.text(0.5, 0.5, "no images to show", ha="center", va="center")
        return _save(fig, path_png)
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig = Figure(figsize=(3.4 * ncols, 3.8 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(np.asarray(images[i]))
            ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return _save(fig, path_png)


def _per_image_loss(y_true: np.ndarray, y_score: np.ndarray, task: str) -> np.ndarray:
    p = np.clip(np.asarray(y_score, dtype=np.float64), EPS, 1.0 - EPS)
    if task == "multilabel":
        t = np.asarray(y_true, dtype=np.float64)
        if t.shape != p.shape:
            raise EvaluationError(f"top_losses: y_true {t.shape} and y_score {p.shape} differ")
        return -(t * np.log(p) + (1.0 - t) * np.log1p(-p)).sum(axis=1)
    if task == "singlelabel":
        idx = np.asarray(y_true, dtype=np.int64).reshape(-1)
        if p.ndim != 2 or idx.shape[0] != p.shape[0]:
            raise EvaluationError(f"top_losses: y_true {idx.shape} does not match y_score {p.shape}")
        return -np.log(p[np.arange(idx.shape[0]), idx])
    raise EvaluationError(f"top_losses: unknown task {task!r}; expected 'multilabel' or 'singlelabel'")


def top_losses(y_true: Any, y_score: Any, task: str, k: int) -> np.ndarray:
    """Indices of the ``k`` images with the highest loss, highest first.

    Args:
        y_true: (N, C) 0/1 targets (multilabel) or (N,) class indices (singlelabel).
        y_score: (N, C) label probabilities or (N, K) class probabilities.
        task: ``"multilabel"`` (per-image BCE summed over labels) or ``"singlelabel"``
            (NLL of the true class).
        k: how many (capped at N).

    Returns:
        (min(k, N),) int64 indices; ties keep the original order.
    """
    loss = _per_image_loss(y_true, y_score, task)
    return np.argsort(-loss, kind="stable")[: max(0, int(k))].astype(np.int64)


def top_loss_titles(y_true: Any, y_score: Any, task: str, indices: Sequence[int] | np.ndarray, names: Sequence[str],
                    n_scores: int = 3) -> list[str]:
    """Titles for ``plot_top_losses``: true label(s), the top scores, and the loss.

    Args:
        y_true, y_score, task: as for ``top_losses``.
        indices: the images to title (e.g. the output of ``top_losses``).
        names: label names (multilabel) or class names (singlelabel).
        n_scores: how many of the highest scores to show.

    Returns:
        One title per index.
    """
    loss = _per_image_loss(y_true, y_score, task)
    scores = np.asarray(y_score, dtype=np.float64)
    titles = []
    for i in indices:
        if task == "multilabel":
            true = ", ".join(n for n, on in zip(names, np.asarray(y_true)[i]) if on) or "(none)"
        else:
            true = names[int(np.asarray(y_true).reshape(-1)[i])]
        top = np.argsort(-scores[i], kind="stable")[:n_scores]
        shown = ", ".join(f"{names[j]} {scores[i, j]:.2f}" for j in top)
        text = f"#{int(i)} loss {loss[i]:.2f}\ntrue: {true}\nscores: {shown}"
        wrapped = (textwrap.fill(line, TITLE_WIDTH_CHARS, break_on_hyphens=False) for line in text.splitlines())
        titles.append("\n".join(wrapped))
    return titles


def plot_reliability(panels: dict[str, dict[str, tuple[Any, Any]]], path_png: str | Path, title: str = "",
                     n_bins: int = 15) -> Path:
    """Reliability diagrams: observed frequency against mean score per equal-width bin.

    Args:
        panels: {panel title: {"before": (y, p), "after": (y, p)}}: 0/1 outcomes and scores
            (any shape, flattened) before and after calibration; one panel each.
        path_png: output file.
        title: figure title.
        n_bins: equal-width bins on [0, 1] (the ECE's bins).

    Returns:
        The PNG path.
    """
    from kvasir_ml.evaluation.calibration import ece, reliability_bins

    fig = Figure(figsize=(4.2 * max(1, len(panels)), 4.4))
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (name, curves) in zip(axes, panels.items()):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect")
        for (which, (y, p)), colour in zip(curves.items(), ("tab:red", "tab:blue")):
            bins = reliability_bins(y, p, n_bins)
            pts = [(c, f) for c, f in zip(bins["mean_score"], bins["frequency"]) if c is not None]
            e = ece(y, p, n_bins)
            label = f"{which} (ECE {e:.3f})" if e is not None else f"{which} (no data)"
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", ms=3, color=colour, label=label)
            else:
                ax.plot([], [], color=colour, label=label)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean score in bin")
        ax.set_ylabel("observed frequency")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{title} ({n_bins} equal-width bins)" if title else f"{n_bins} equal-width bins", fontsize=10)
    fig.tight_layout()
    return _save(fig, path_png)
