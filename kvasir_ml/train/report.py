"""Scoring and reporting: val metrics per epoch, the final test report, plots and tracker logs.

The same function scores both models on both tasks (``evaluation.evaluate_classifier``).
Everything fitted after training — temperature calibration, the multi-label model's class
decoder and the thresholds (``evaluation.posthoc.PostHoc``) — is fitted on validation
outputs only and then applied, unchanged, to test; every score this module writes (metrics,
predictions npz, plots, tracker) is the calibrated one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kvasir_ml.evaluation import plots
from kvasir_ml.evaluation.calibration import N_BINS, ece_summary
from kvasir_ml.evaluation.classification import (
    class_proba_to_label_scores,
    evaluate_classifier,
    label_scores_to_class_proba,
)
from kvasir_ml.evaluation.decoder import top1_ceiling
from kvasir_ml.evaluation.posthoc import PostHoc, fit_posthoc
from kvasir_ml.train.data import inset_inputs
from kvasir_ml.train.prepare import RunData

# Scalars copied into the per-epoch history (prefixed "val_") and the tracker summary.
SCALAR_KEYS = ("macro_ap", "micro_ap", "macro_f1", "subset_accuracy", "hamming_loss", "top1", "mcc",
               "singlelabel_macro_f1", "ece", "ece_uncalibrated")


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


def class_counts(data: RunData) -> np.ndarray:
    """(K,) train + val source-class counts: the class decoder's prior."""
    y = np.concatenate([data.records[s].y_class for s in ("train", "val")])
    return np.bincount(y[y >= 0], minlength=len(data.class_names)).astype(np.float64)


def tune_on_val(task: str, val_outputs: np.ndarray, data: RunData) -> PostHoc:
    """Calibration, class decoder and F1-optimal thresholds, all from VALIDATION outputs
    (``val_outputs``: the model's raw probabilities on val, with or without TTA)."""
    rec = data.records["val"]
    return fit_posthoc(task, val_outputs, rec.y_labels, rec.y_class, data.class_label_matrix, data.label_names,
                       data.class_names, class_counts(data))


def calibrated(task: str, outputs: np.ndarray, data: RunData, post: PostHoc) -> tuple[np.ndarray, np.ndarray]:
    """``(label_scores, class_proba)`` after calibration and decoding (what every report uses)."""
    return post.scores(outputs, data.class_label_matrix, data.label_names)


def uncalibrated(task: str, outputs: np.ndarray, data: RunData) -> tuple[np.ndarray, np.ndarray]:
    """The raw scores, decoded the old way (label-set likelihood): the ECE "before" reference."""
    if task == "multilabel":
        return outputs, label_scores_to_class_proba(outputs, data.class_label_matrix)
    return class_proba_to_label_scores(outputs, data.class_label_matrix), outputs


def score(task: str, outputs: np.ndarray, split: str, data: RunData, post: PostHoc) -> dict[str, Any]:
    """``evaluate_classifier`` on one split's calibrated scores with val-fitted ``post``, plus
    ECE before/after calibration (``calibration``, top-level ``ece`` = calibrated macro ECE)
    and the multi-label top-1 ceiling of the split's classes."""
    rec = data.records[split]
    scores, proba = calibrated(task, outputs, data, post)
    model_out = scores if task == "multilabel" else proba
    metrics = evaluate_classifier(task, model_out, rec.y_labels, rec.y_class, data.class_label_matrix,
                                  data.label_names, data.class_names, thresholds=post.thresholds,
                                  class_proba=proba if task == "multilabel" else None,
                                  class_proba_from=post.class_proba_from)
    raw_scores, raw_proba = uncalibrated(task, outputs, data)
    before = ece_summary(rec.y_labels, raw_scores, data.label_names, rec.y_class, raw_proba)
    after = ece_summary(rec.y_labels, scores, data.label_names, rec.y_class, proba)
    metrics["calibration"] = {**post.describe(), "bins": N_BINS, "before": before, "after": after}
    metrics["ece"], metrics["ece_uncalibrated"] = after["macro_ece"], before["macro_ece"]
    metrics.update(top1_ceiling(data.class_label_matrix, data.class_names, rec.y_class))
    return metrics


def scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": metrics[k] for k in SCALAR_KEYS if metrics.get(k) is not None}


def write_plots(task: str, outputs: np.ndarray, metrics: dict[str, Any], data: RunData, inset_mode: str,
                branch_px: int, plot_dir: Path, post: PostHoc, k_top: int = 8) -> dict[str, Path]:
    """Confusion matrix, per-label PR curves, reliability diagram (before/after calibration)
    and a top-losses grid of the test split (``outputs``: the model's raw probabilities)."""
    rec = data.records["test"]
    scores, proba = calibrated(task, outputs, data, post)
    raw_scores, raw_proba = uncalibrated(task, outputs, data)
    scored = rec.y_labels.sum(axis=0) > 0  # the labels macro AP and macro ECE cover
    keep_cls = rec.y_class >= 0
    paths = {
        "confusion": plots.plot_confusion(metrics["confusion"], data.class_names, plot_dir / "confusion.png",
                                          title=f"test confusion ({task} model)"),
        "pr_curves": plots.plot_pr_curves(rec.y_labels, scores, data.label_names,
                                          plot_dir / "pr_curves.png", title=f"test PR curves ({task} model)"),
        "reliability": plots.plot_reliability(
            {"label scores (pooled)": {"before": (rec.y_labels[:, scored], raw_scores[:, scored]),
                                       "after": (rec.y_labels[:, scored], scores[:, scored])},
             "top class": {w: (p[keep_cls].argmax(1) == rec.y_class[keep_cls], p[keep_cls].max(1))
                           for w, p in (("before", raw_proba), ("after", proba))}},
            plot_dir / "reliability.png", title=f"test reliability ({task} model)"),
    }
    model_out = scores if task == "multilabel" else proba
    if task == "multilabel":
        keep: np.ndarray = np.arange(len(rec))
        y_true, names = rec.y_labels, data.label_names
    else:
        keep = np.flatnonzero(keep_cls)
        y_true, names = rec.y_class[keep], data.class_names
    if keep.size:
        order = plots.top_losses(y_true, model_out[keep], task, k_top)
        titles = plots.top_loss_titles(y_true, model_out[keep], task, order, names)
        images = []
        for i in keep[order]:
            rgb = data.cache.get(rec.paths[i])
            shown = inset_inputs(rgb, rec.sizes[i], rec.inset_states[i], inset_mode, branch_px)
            images.append(shown["image"].permute(1, 2, 0).numpy())  # what the model saw
        paths["top_losses"] = plots.plot_top_losses(images, titles, plot_dir / "top_losses.png")
    return paths


def sample_predictions(task: str, outputs: np.ndarray, metrics: dict[str, Any], data: RunData,
                       n: int, post: PostHoc) -> list[dict[str, Any]]:
    """The first ``n`` test images with true and predicted labels (calibrated scores, val-tuned
    thresholds) as captions."""
    rec = data.records["test"]
    scores, _ = calibrated(task, outputs, data, post)
    thresholds = np.asarray(metrics["thresholds"])
    samples = []
    for i in range(min(n, len(rec))):
        true = [name for name, on in zip(data.label_names, rec.y_labels[i]) if on]
        pred = [f"{name} {s:.2f}" for name, s, t in zip(data.label_names, scores[i], thresholds) if s >= t]
        caption = f"true: {', '.join(true) or '-'} | predicted: {', '.join(pred) or '-'} | inset: {rec.inset_states[i]}"
        samples.append({"image": data.cache.get(rec.paths[i]), "caption": caption, "boxes": []})
    return samples


def save_predictions(path: Path, task: str, outputs: np.ndarray, data: RunData, post: PostHoc,
                     split: str = "test") -> Path:
    """One split's targets and both tasks' scores as ``.npz``, for cross-run plots (the
    experiment report overlays PR curves of several runs) without re-running the models.
    The scores are the calibrated ones and ``class_proba`` the decoded one (``post``), so
    the paired bootstrap rescoring them with the val-tuned thresholds reproduces metrics.json.

    Arrays: ``y_labels`` (N, L) 0/1, ``y_class`` (N,) (-1 = no source class), ``label_scores``
    (N, L), ``class_proba`` (N, K), ``label_names``, ``class_names``, ``file_names`` (N,) (the
    split's images in row order: the paired bootstrap matches runs image by image); scores
    are float64 so curves drawn from them give the AP values of ``metrics.json``.
    """
    from kvasir_ml.io import atomic_write

    rec = data.records[split]
    file_names = [str(f) for f in data.file_names[split]]  # test: the scored images only (eval.ground_truth)
    if len(file_names) != len(rec):
        raise ValueError(f"{split}: {len(rec)} records but {len(file_names)} file names in the split")
    scores, proba = calibrated(task, outputs, data, post)
    arrays: dict[str, Any] = {"y_labels": np.asarray(rec.y_labels, dtype=np.int8), "y_class": np.asarray(rec.y_class, dtype=np.int64),
              "label_scores": np.asarray(scores, dtype=np.float64),
              "class_proba": np.asarray(proba, dtype=np.float64),
              "label_names": np.array(data.label_names), "class_names": np.array(data.class_names),
              "file_names": np.array(file_names)}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)
    return path


def calibration_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """Per label: ECE before and after calibration and the label's temperature (W&B table)."""
    cal = metrics["calibration"]
    temps = cal["calibration"]["temperatures"]
    per_t = dict(zip(metrics["per_class"], temps)) if len(temps) == len(metrics["per_class"]) else {}
    return [[name, cal["before"]["per_label"][name], cal["after"]["per_label"][name], per_t.get(name, temps[0])]
            for name in metrics["per_class"]]


def log_final(tracker: Any, task: str, outputs: np.ndarray, metrics: dict[str, Any], data: RunData,
              plot_paths: dict[str, Path], run_dir: Path, tracking: Any, run_name: str, post: PostHoc) -> None:
    """Mirror the final test report into the tracker (the run folder stays the source of truth)."""
    rec = data.records["test"]
    cal = metrics["calibration"]
    tracker.summary({**scalars(metrics, "test/"),
                     **{f"test/{w}_{k}": cal[w][k] for w in ("before", "after")
                        for k in ("pooled_ece", "class_top1_ece") if cal[w].get(k) is not None}})
    rows = [[name, pc.get("ap"), pc.get("f1"), pc.get("threshold"), pc.get("support")]
            for name, pc in metrics["per_class"].items()]
    tracker.table("test/per_class", ["label", "ap", "f1", "threshold", "support"], rows)
    tracker.table("test/calibration", ["label", "ece_before", "ece_after", "temperature"], calibration_rows(metrics))
    for key, path in plot_paths.items():
        tracker.image(f"plots/{key}", path, caption=key)
    scores, proba = calibrated(task, outputs, data, post)
    tracker.pr_curves("test/pr_curves", rec.y_labels, scores, data.label_names)
    keep = rec.y_class >= 0
    tracker.confusion("test/confusion", rec.y_class[keep].tolist(), proba[keep].argmax(1).tolist(), data.class_names)
    if tracking.n_sample_images:
        tracker.predictions("test/samples", sample_predictions(task, outputs, metrics, data, tracking.n_sample_images,
                                                               post), data.label_names)
    tracker.artifact(run_dir / "split.json", f"{run_name}-split", "dataset", {"sha256": data.split.sha256})
    if tracking.log_model:
        tracker.artifact(run_dir / "checkpoints" / "best.pt", f"{run_name}-model", "model",
                         {"macro_ap": metrics.get("macro_ap"), "task": task})
