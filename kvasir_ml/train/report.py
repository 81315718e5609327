"""Scoring and reporting: val metrics per epoch, the final test report, plots and tracker logs.

The same function scores both models on both tasks (``evaluation.evaluate_classifier``);
thresholds are tuned on validation outputs only and then applied, unchanged, to test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kvasir_ml.evaluation import plots
from kvasir_ml.evaluation.classification import class_proba_to_label_scores, evaluate_classifier, tune_thresholds
from kvasir_ml.train.data import inset_inputs
from kvasir_ml.train.prepare import RunData

# Scalars copied into the per-epoch history (prefixed "val_") and the tracker summary.
SCALAR_KEYS = ("macro_ap", "micro_ap", "macro_f1", "subset_accuracy", "hamming_loss", "top1", "mcc",
               "singlelabel_macro_f1")


# What each checkpoint selection rule means, copied into metrics.json and the comparison report.
SELECTION_RULES = {
    "last": "the fixed last epoch (same training budget for every model; no use of val to pick weights)",
    "val_loss": "the epoch with the lowest val loss of the model's own objective (BCE or cross-entropy)",
    "val_macro_ap": "the epoch with the highest val macro AP (a multi-label metric: favours multi-label models)",
}


def selection_score(rule: str, entry: dict[str, Any]) -> float:
    """Higher is better: the epoch whose score beats every earlier one becomes ``best.pt``.

    ``last`` scores the epoch number, so every epoch replaces the previous one.
    """
    if rule == "last":
        return float(entry["epoch"])
    if rule == "val_loss":
        loss = entry.get("val_loss")
        return -float(loss) if loss is not None else -float("inf")
    if rule == "val_macro_ap":
        ap = entry.get("val_macro_ap")
        return float(ap) if ap is not None else -float("inf")
    raise ValueError(f"unknown checkpoint selection rule {rule!r}; expected one of {sorted(SELECTION_RULES)}")


def selection_record(rule: str, best: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json["selection"]``: the rule, what it means and the epoch it chose."""
    return {"rule": rule, "description": SELECTION_RULES[rule], "epoch": int(best["epoch"])}


def label_scores(task: str, outputs: np.ndarray, data: RunData) -> np.ndarray:
    """(N, L) label scores of a model's outputs (single-label: through the taxonomy)."""
    return outputs if task == "multilabel" else class_proba_to_label_scores(outputs, data.class_label_matrix)


def tune_on_val(task: str, val_outputs: np.ndarray, data: RunData) -> list[float]:
    """Per-label F1-optimal thresholds from VALIDATION outputs."""
    y = data.records["val"].y_labels
    return [float(t) for t in tune_thresholds(y, label_scores(task, val_outputs, data), data.label_names)]


def score(task: str, outputs: np.ndarray, split: str, data: RunData, thresholds: list[float]) -> dict[str, Any]:
    """``evaluate_classifier`` on one split with given (val-tuned) thresholds."""
    rec = data.records[split]
    return evaluate_classifier(task, outputs, rec.y_labels, rec.y_class, data.class_label_matrix,
                               data.label_names, data.class_names, thresholds=thresholds)


def scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": metrics[k] for k in SCALAR_KEYS if metrics.get(k) is not None}


def write_plots(task: str, outputs: np.ndarray, metrics: dict[str, Any], data: RunData, inset_mode: str,
                branch_px: int, plot_dir: Path, k_top: int = 8) -> dict[str, Path]:
    """Confusion matrix, per-label PR curves and a top-losses grid of the test split."""
    rec = data.records["test"]
    paths = {
        "confusion": plots.plot_confusion(metrics["confusion"], data.class_names, plot_dir / "confusion.png",
                                          title=f"test confusion ({task} model)"),
        "pr_curves": plots.plot_pr_curves(rec.y_labels, label_scores(task, outputs, data), data.label_names,
                                          plot_dir / "pr_curves.png", title=f"test PR curves ({task} model)"),
    }
    if task == "multilabel":
        keep = np.arange(len(rec))
        y_true, names = rec.y_labels, data.label_names
    else:
        keep = np.flatnonzero(rec.y_class >= 0)
        y_true, names = rec.y_class[keep], data.class_names
    if keep.size:
        order = plots.top_losses(y_true, outputs[keep], task, k_top)
        titles = plots.top_loss_titles(y_true, outputs[keep], task, order, names)
        images = []
        for i in keep[order]:
            rgb = data.cache.get(rec.paths[i])
            shown = inset_inputs(rgb, rec.sizes[i], rec.inset_states[i], rec.inset_boxes[i], inset_mode, branch_px)
            images.append(shown["image"].permute(1, 2, 0).numpy())  # what the model saw
        paths["top_losses"] = plots.plot_top_losses(images, titles, plot_dir / "top_losses.png")
    return paths


def sample_predictions(task: str, outputs: np.ndarray, metrics: dict[str, Any], data: RunData,
                       n: int) -> list[dict[str, Any]]:
    """The first ``n`` test images with true and predicted labels (val-tuned thresholds) as captions."""
    rec = data.records["test"]
    scores = label_scores(task, outputs, data)
    thresholds = np.asarray(metrics["thresholds"])
    samples = []
    for i in range(min(n, len(rec))):
        true = [name for name, on in zip(data.label_names, rec.y_labels[i]) if on]
        pred = [f"{name} {s:.2f}" for name, s, t in zip(data.label_names, scores[i], thresholds) if s >= t]
        caption = f"true: {', '.join(true) or '-'} | predicted: {', '.join(pred) or '-'} | inset: {rec.inset_states[i]}"
        samples.append({"image": data.cache.get(rec.paths[i]), "caption": caption, "boxes": []})
    return samples


def save_predictions(path: Path, task: str, outputs: np.ndarray, data: RunData, split: str = "test") -> Path:
    """One split's targets and both tasks' scores as ``.npz``, for cross-run plots (the
    experiment report overlays PR curves of several runs) without re-running the models.

    Arrays: ``y_labels`` (N, L) 0/1, ``y_class`` (N,) (-1 = no source class), ``label_scores``
    (N, L), ``class_proba`` (N, K), ``label_names``, ``class_names``, ``file_names`` (N,) (the
    split's images in row order: the paired bootstrap matches runs image by image); scores
    are float64 so curves drawn from them give the AP values of ``metrics.json``.
    """
    from kvasir_ml.evaluation.classification import label_scores_to_class_proba
    from kvasir_ml.io import atomic_write

    rec = data.records[split]
    file_names = [str(f) for f in data.split.splits[split]]
    if len(file_names) != len(rec):
        raise ValueError(f"{split}: {len(rec)} records but {len(file_names)} file names in the split")
    proba = outputs if task == "singlelabel" else label_scores_to_class_proba(outputs, data.class_label_matrix)
    arrays = {"y_labels": np.asarray(rec.y_labels, dtype=np.int8), "y_class": np.asarray(rec.y_class, dtype=np.int64),
              "label_scores": np.asarray(label_scores(task, outputs, data), dtype=np.float64),
              "class_proba": np.asarray(proba, dtype=np.float64),
              "label_names": np.array(data.label_names), "class_names": np.array(data.class_names),
              "file_names": np.array(file_names)}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)
    return path


def log_final(tracker: Any, task: str, outputs: np.ndarray, metrics: dict[str, Any], data: RunData,
              plot_paths: dict[str, Path], run_dir: Path, tracking: Any, run_name: str) -> None:
    """Mirror the final test report into the tracker (the run folder stays the source of truth)."""
    rec = data.records["test"]
    tracker.summary(scalars(metrics, "test/"))
    rows = [[name, pc.get("ap"), pc.get("f1"), pc.get("threshold"), pc.get("support")]
            for name, pc in metrics["per_class"].items()]
    tracker.table("test/per_class", ["label", "ap", "f1", "threshold", "support"], rows)
    for key, path in plot_paths.items():
        tracker.image(f"plots/{key}", path, caption=key)
    tracker.pr_curves("test/pr_curves", rec.y_labels, label_scores(task, outputs, data), data.label_names)
    keep = rec.y_class >= 0
    proba = outputs if task == "singlelabel" else None
    if proba is None:
        from kvasir_ml.evaluation.classification import label_scores_to_class_proba

        proba = label_scores_to_class_proba(outputs, data.class_label_matrix)
    tracker.confusion("test/confusion", rec.y_class[keep].tolist(), proba[keep].argmax(1).tolist(), data.class_names)
    if tracking.n_sample_images:
        tracker.predictions("test/samples", sample_predictions(task, outputs, metrics, data, tracking.n_sample_images),
                            data.label_names)
    tracker.artifact(run_dir / "split.json", f"{run_name}-split", "dataset", {"sha256": data.split.sha256})
    if tracking.log_model:
        tracker.artifact(run_dir / "checkpoints" / "best.pt", f"{run_name}-model", "model",
                         {"macro_ap": metrics.get("macro_ap"), "task": task})
