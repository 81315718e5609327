"""Write a comparison: ``comparison.json``, ``comparison.md``, PNG plots and a W&B ``compare`` run.

The Markdown shows the numbers of ``comparison.json`` rounded to 3 decimals; the JSON keeps
them exact. Plots are drawn with ``matplotlib.figure.Figure`` (no pyplot state), like
``kvasir_ml.evaluation.plots``, whose PR overlay and confusion plots are reused here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kvasir_ml.config import TrackingConfig
from kvasir_ml.evaluation import plots
from kvasir_ml.evaluation.bootstrap import seed_differences
from kvasir_ml.experiment.ground_truth import ground_truth_sentence
from kvasir_ml.experiment.tables import METRIC_TITLES, classifier_table, detector_table, fmt, metrics_table
from kvasir_ml.experiment.tables import md_table as _md_table
from kvasir_ml.experiment.tables import section_lines
from kvasir_ml.experiment.tables import variants_of as _variants
from kvasir_ml.io import atomic_write, atomic_write_text
from kvasir_ml.results_schema import Aggregate, ComparisonFile, as_comparison, write_result

# The tables live in experiment.tables; these names stay importable from here.
__all__ = ["METRIC_TITLES", "classifier_table", "detector_table", "fmt", "metrics_table", "markdown",
           "write_plots", "write_report", "log_comparison_run", "comparison_rows"]


def _per_class_lines(comparison: ComparisonFile) -> list[str]:
    classifiers = _variants(comparison, "classifier")
    labels = list(dict.fromkeys(lbl for v in classifiers for lbl in v.per_class_ap))
    if not labels:
        return []
    rows = [[lbl, *(fmt(v.per_class_ap.get(lbl)) for v in classifiers)] for lbl in labels]
    return ["## Per-class AP (test)", "", *_md_table(["label", *(v.name for v in classifiers)], rows), "",
            "`–`: the label has no positive image in the test split.", ""]


def _hard_pair_lines(comparison: ComparisonFile) -> list[str]:
    rows = []
    for v in _variants(comparison, "classifier"):
        for pair in v.hard_pairs.values():
            (aa, ab), (ba, bb) = pair.matrix_sum
            rows.append([v.name, f"{pair.a} / {pair.b}", fmt(pair.a_as_b, 2), fmt(pair.b_as_a, 2),
                         fmt(pair.rate), f"[[{aa}, {ab}], [{ba}, {bb}]]"])
    missing = comparison.hard_pairs_missing
    note = [f"Pairs whose classes the runs do not have: {', '.join(missing)}.", ""] if missing else []
    if not rows:
        return ["## Hard pairs", "", *note] if note else []
    return ["## Hard pairs (single-label task, test confusion)", "", *note,
            "Errors between the classes the Kvasir article found hardest to tell apart, from each "
            "variant's single-label confusion matrix (multi-label models: classes from the "
            "class decoder fitted on val). a→b: images of class a predicted as b, per run (mean ± std); "
            "rate: both errors over both supports; matrix: rows true a, b; columns predicted a, b; "
            "summed over seeds.", "",
            *_md_table(["variant", "a / b", "a→b", "b→a", "rate", "matrix"], rows), ""]


def _rel(path: str | Path, base: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), base.resolve())
    except ValueError:  # another drive (Windows)
        return str(path)


def _design_lines(comparison: ComparisonFile) -> list[str]:
    """How the comparison was made: selection rules, what the paired variants share, the intervals."""
    rules = {v.name: v.selection for v in _variants(comparison, "classifier")}
    distinct = sorted({r for rs in rules.values() for r in rs})
    lines = ["## Design", ""]
    if distinct:
        from kvasir_ml.train.report import SELECTION_RULES

        lines.append("- **Checkpoint selection**: " + "; ".join(
            f"`{r}` = {SELECTION_RULES.get(r, '?')}" for r in distinct)
            + ("." if len(distinct) == 1 else f" (differs between variants: {rules}; NOT like for like)."))
    design = comparison.design
    if design.get("controlled") and design.get("pairs", True):
        lines.append("- **Controlled**: in each multi- vs single-label pair the resolved run configs are equal "
                     "(data, split, image size, architecture, inset mode, optimiser, schedule, epochs, "
                     "augmentation, dropout, weight decay, seeds, selection rule) except "
                     f"{', '.join(f'`{k}`' for k in design.get('allowed_differences', []))}.")
    elif design.get("controlled") is False:
        lines.append("- **UNCONTROLLED**: the multi- vs single-label runs differ in more than the task, so a "
                     "difference cannot be put down to the task and no `*` is given: "
                     + "; ".join(design.get("differences") or ["unknown"]) + ".")
    boot = comparison.paired_bootstrap
    if boot:
        lines.append(f"- **Uncertainty**: ± is the std over training seeds (how much retraining moves a number); "
                     f"the intervals: {boot['method']} ({boot['n_resamples']} resamples, seed {boot['seed']}). "
                     "They say how much the difference would move with other training runs and another test "
                     "set of this size from the same distribution, not on another dataset; see "
                     "docs/statistics.md.")
    return [*lines, ""]


def markdown(comparison: ComparisonFile, out_dir: Path, plot_paths: dict[str, Path], title: str) -> str:
    """The whole ``comparison.md``."""
    splits = comparison.split_sha256
    seeds = sorted({s for v in comparison.variants.values() for s in v.seeds if s is not None})
    lines = [f"# {title}", "",
             f"Test split of {'one frozen split' if comparison.same_split else 'DIFFERENT splits (not like for like!)'}"
             f" (sha256 {', '.join(f'`{s[:12]}`' for s in splits) or 'unknown'}), dataset "
             f"{', '.join(comparison.datasets) or 'unknown'}, seeds {seeds}. "
             "Mean ± std over seeds (std: sample standard deviation, ddof=1; one seed shows the mean alone).", "",
             *([s, ""] if (s := ground_truth_sentence(comparison.ground_truth)) else []),
             "Every classifier is scored on both tasks with the same code: multi-label metrics (macro/micro AP, "
             "macro F1 at per-label thresholds tuned on val, subset accuracy) on label scores (single-label "
             "models: class probabilities mapped through the taxonomy), single-label metrics (top-1, MCC) on "
             "class probabilities (multi-label models: a multinomial logistic-regression decoder from the "
             "temperature-calibrated label logits to the source class, fitted on val; see docs/calibration.md).", "",
             *_design_lines(comparison), *section_lines(comparison),
             *(["*chance*: a model without skill on this test split (AP = label prevalence, top-1 = majority "
                "class share, MCC = 0).", ""] if comparison.chance else []),
             *(["## Detector (test)", "", *detector_table(comparison), ""] if detector_table(comparison) else []),
             *_per_class_lines(comparison), *_hard_pair_lines(comparison)]
    if plot_paths:
        lines += ["## Plots", ""]
        lines += [f"![{key}]({_rel(path, out_dir)})" for key, path in plot_paths.items()]
        lines.append("")
    lines += ["## Runs", ""]
    for v in comparison.variants.values():
        lines.append(f"- **{v.name}** ({v.model}, seeds {v.seeds}): "
                     + ", ".join(f"`{_rel(d, out_dir) if Path(d).exists() else d}`" for d in v.run_dirs))
    return "\n".join(lines) + "\n"


def _save_png(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=plots.DPI, bbox_inches="tight"))
    return path


def _grouped_bars(groups: list[str], series: dict[str, list[Aggregate | None]], path: Path, title: str,
                  ylabel: str) -> Path:
    """Bars per group (x) and series (colour), height = mean, error bar = std over seeds."""
    n = max(1, len(series))
    width = 0.8 / n
    fig = Figure(figsize=(max(6.0, 0.9 * len(groups) * max(1, n / 2) + 2), 4.2))
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    low = 0.0  # MCC can be negative
    for i, (name, aggs) in enumerate(series.items()):
        means = np.array([a.mean if a and a.mean is not None else np.nan for a in aggs], dtype=float)
        stds = np.array([a.std if a and a.std is not None else 0.0 for a in aggs], dtype=float)
        if np.isfinite(means).any():
            low = min(low, float(np.nanmin(means - stds)))
        ax.bar(x + (i - (n - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=name, color=f"C{i % 10}")
    ax.set_xticks(x, groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(low - 0.05 if low < 0 else 0.0, 1.05)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    return _save_png(fig, path)


def _seed_range(result: dict[str, Any]) -> list[float | None]:
    seeds = seed_differences(result)
    return [min(seeds), max(seeds)] if seeds else [None, None]


def _paired_plot(comparison: ComparisonFile, path: Path) -> Path | None:
    """Forest plot: each pair's difference per metric with its 95% paired-bootstrap interval."""
    rows = [(f"{section.replace('_', ' ')}: {pair.replace('-vs-', ' − ')}", METRIC_TITLES.get(k, k), res)
            for section in ("paired", "inset_ablation", "paired_tta", "inset_ablation_tta")
            for pair, results in comparison.section(section).items() for k, res in results.items()
            if res.get("diff") is not None and res.get("ci95")]
    if not rows:
        return None
    groups = list(dict.fromkeys(r[0] for r in rows))
    fig = Figure(figsize=(7.5, 0.28 * len(rows) + 0.5 * len(groups) + 1.2))
    ax = fig.add_subplot()
    y, ticks, labels = 0.0, [], []
    for gi, group in enumerate(groups):
        for _, metric, res in (r for r in rows if r[0] == group):
            lo, hi = res["ci95"]
            ax.errorbar(res["diff"], y, xerr=[[res["diff"] - lo], [hi - res["diff"]]], fmt="o", color=f"C{gi % 10}",
                        capsize=3, markersize=4, mfc=f"C{gi % 10}" if res.get("star") else "white")
            seeds = seed_differences(res)
            if len(seeds) > 1:  # retraining spread: seed i of each side
                ax.plot(seeds, [y - 0.25] * len(seeds), "x", color=f"C{gi % 10}", markersize=4, alpha=0.7)
            ticks.append(y)
            labels.append(f"{metric}  ({group})")
            y -= 1.0
        y -= 0.6
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlabel("difference (first − second): o with its seed-aware 95% interval (filled: a verdict `*`); "
                  "x per seed", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("paired differences (seed-aware intervals)")
    return _save_png(fig, path)


def write_plots(comparison: ComparisonFile, plot_dir: Path,
                curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                curve_labels: list[str] | None = None) -> dict[str, Path]:
    """Metric bars, per-class AP bars, hard-pair bars, PR overlay and summed confusion matrices.

    Args:
        comparison: from ``compare_runs``.
        plot_dir: output folder.
        curves: pooled test (y_labels, label_scores) per variant (``pooled_predictions``);
            without them there is no PR overlay.
        curve_labels: the label names of ``curves``.

    Returns:
        {plot key: PNG path}.
    """
    classifiers = _variants(comparison, "classifier")
    paths: dict[str, Path] = {}
    if not classifiers:
        return paths
    keys = comparison.metrics
    paths["metrics"] = _grouped_bars([METRIC_TITLES.get(k, k) for k in keys],
                                     {v.name: [v.test.get(k) for k in keys] for v in classifiers},
                                     plot_dir / "metrics.png", "test metrics (mean ± std over seeds)", "score")
    labels = list(dict.fromkeys(lbl for v in classifiers for lbl in v.per_class_ap))
    paths["per_class_ap"] = _grouped_bars(labels, {v.name: [v.per_class_ap.get(lbl) for lbl in labels]
                                                   for v in classifiers},
                                          plot_dir / "per_class_ap.png", "test AP per label", "AP")
    pairs = list(dict.fromkeys(p for v in classifiers for p in v.hard_pairs))
    if pairs:
        paths["hard_pairs"] = _grouped_bars(pairs, {v.name: [hp.rate if (hp := v.hard_pairs.get(p)) else None
                                                             for p in pairs] for v in classifiers},
                                            plot_dir / "hard_pairs.png",
                                            "confusion rate between hard pairs (lower is better)", "error rate")
    if curves:
        assert curve_labels is not None, "PR curves come with their label names"
        paths["pr_overlay"] = plots.plot_pr_overlay(curves, curve_labels, plot_dir / "pr_overlay.png",
                                                    title="test PR curves per label; each variant's seeds pooled "
                                                          "(legend AP of the pool, not the per-seed mean)")
    paired = _paired_plot(comparison, plot_dir / "paired_differences.png")
    if paired is not None:
        paths["paired_differences"] = paired
    class_names = comparison.class_names
    for v in classifiers:
        if v.confusion_sum is not None and class_names:
            paths[f"confusion_{v.name}"] = plots.plot_confusion(
                v.confusion_sum, class_names, plot_dir / f"confusion_{v.name}.png",
                title=f"{v.name}: single-label task, test, summed over {v.n_seeds} seed(s)")
    return paths


def write_report(comparison: dict[str, Any], out_dir: str | Path, title: str = "Multi-label vs single-label",
                 curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 curve_labels: list[str] | None = None) -> dict[str, Path]:
    """Write ``comparison.json``, ``comparison.md`` and ``plots/*.png`` into ``out_dir``.

    An existing comparison.json/.md is kept as a timestamped backup before it is replaced.
    ``comparison`` (``compare_runs``' dict) gains ``plots`` and is written as a ``ComparisonFile``.

    Returns:
        {"json", "markdown", and one key per plot}: the paths written.
    """
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "comparison.json", out_dir / "comparison.md"
    typed = as_comparison(comparison, str(json_path))
    plot_paths = write_plots(typed, out_dir / "plots", curves, curve_labels)
    comparison["plots"] = typed.plots = {k: _rel(p, out_dir) for k, p in plot_paths.items()}
    write_result(json_path, typed, keep_backup=True)
    atomic_write_text(md_path, markdown(typed, out_dir, plot_paths, title), keep_backup=True)
    return {"json": json_path, "markdown": md_path, **plot_paths}


def _flat_summary(comparison: ComparisonFile) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in comparison.variants.values():
        out[f"{v.name}/n_seeds"] = v.n_seeds
        for k, agg in v.test.items():
            for stat in ("mean", "std"):
                if agg.get(stat) is not None:
                    out[f"{v.name}/{k}_{stat}"] = agg.get(stat)
    aa = comparison.aa_control or {}
    if aa.get("cells"):
        out.update({"aa_control/cells": aa["cells"], "aa_control/starred": aa["starred"], "aa_control/rate": aa["rate"]})
    if comparison.design:
        out["design/controlled"] = bool(comparison.design.get("controlled"))
    return out


def comparison_rows(comparison: ComparisonFile) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the W&B ``comparison`` table: one row per variant, mean and std per metric."""
    keys = list(dict.fromkeys(k for v in comparison.variants.values() for k in v.test))
    columns = ["variant", "kind", "task", "inset_mode", "model", "n_seeds",
               *(f"{k}_{s}" for k in keys for s in ("mean", "std"))]
    rows = [[v.name, v.kind, v.task, v.inset_mode, v.model, v.n_seeds,
             *(agg.get(s) if (agg := v.test.get(k)) else None for k in keys for s in ("mean", "std"))]
            for v in comparison.variants.values()]
    return columns, rows


def log_comparison_run(comparison: ComparisonFile | dict[str, Any], tracking: TrackingConfig, out_dir: str | Path, name: str,
                       paths: dict[str, Path]) -> Path | None:
    """Mirror the comparison into a W&B run of job type ``compare`` in the experiment's group.

    Logs the tables ``comparison`` (one row per variant), ``per_class_ap``, ``hard_pairs`` and
    ``paired`` (each pair's difference and 95% interval per metric),
    the summary ``<variant>/<metric>_mean|_std`` and ``<variant>/n_seeds``, the plots and
    ``comparison.json`` as an artifact.

    Args:
        comparison: from ``compare_runs``.
        tracking: mode/project/entity/group/tags (``disabled`` logs nothing).
        out_dir: the experiment folder; W&B files go to ``<out_dir>/wandb`` unless ``tracking.dir``.
        name: experiment name (the run is ``<name>-compare``).
        paths: what ``write_report`` returned.

    Returns:
        The W&B offline run folder, or None when tracking is disabled or W&B could not start.
    """
    from kvasir_ml.tracking import make_tracker

    comparison = as_comparison(comparison)
    config = {"experiment": name, "variants": list(comparison.variants),
              "run_dirs": {k: v.run_dirs for k, v in comparison.variants.items()},
              "split_sha256": comparison.split_sha256, "std": comparison.std}
    tracker = make_tracker(tracking, Path(out_dir), f"{name}-compare", "compare", config, tags=["compare"])
    try:
        tracker.table("comparison", *comparison_rows(comparison))
        classifiers = _variants(comparison, "classifier")
        labels = list(dict.fromkeys(lbl for v in classifiers for lbl in v.per_class_ap))
        if labels:
            tracker.table("per_class_ap", ["label", *(f"{v.name}_mean" for v in classifiers)],
                          [[lbl, *(a.mean if (a := v.per_class_ap.get(lbl)) else None for v in classifiers)]
                           for lbl in labels])
        pair_rows = [[v.name, p.a, p.b, p.a_as_b.mean, p.b_as_a.mean, p.rate.mean, p.rate.std]
                     for v in classifiers for p in v.hard_pairs.values()]
        if pair_rows:
            tracker.table("hard_pairs", ["variant", "a", "b", "a_as_b_mean", "b_as_a_mean", "rate_mean", "rate_std"],
                          pair_rows)
        paired_rows = [[section, pair, metric, res["diff"], *(res["ci95"] or [None, None]),
                        *(res.get("ci95_images") or [None, None]), *_seed_range(res),
                        "/".join(str(n) for n in res.get("n_seeds") or []), res.get("seeds_needed"),
                        bool(res.get("star")), res.get("verdict")]
                       for section in ("paired", "inset_ablation", "paired_tta", "inset_ablation_tta")
                       for pair, results in comparison.section(section).items()
                       for metric, res in results.items()]
        if paired_rows:
            tracker.table("paired", ["section", "pair", "metric", "diff", "ci95_low", "ci95_high",
                                     "ci95_images_low", "ci95_images_high", "per_seed_min", "per_seed_max",
                                     "seeds", "seeds_needed", "star", "verdict"], paired_rows)
        tracker.summary(_flat_summary(comparison))
        for key, path in paths.items():
            if Path(path).suffix == ".png":
                tracker.image(f"plots/{key}", path, caption=key)
        if "json" in paths:
            tracker.artifact(paths["json"], f"{name}-comparison", "comparison",
                             {"variants": list(comparison.variants)})
    finally:
        tracker.finish()
    return Path(tracker.offline_dir) if hasattr(tracker, "offline_dir") else None
