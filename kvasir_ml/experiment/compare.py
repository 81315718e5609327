"""Aggregate finished runs into one comparison: mean and std over seeds per model variant.

A run is read from its folder (``metrics.json`` is the source of truth, plus the optional
``predictions_test.npz`` for overlaid PR curves) or rebuilt from a W&B run's summary and
config (``metrics_from_wandb``). Runs are grouped into variants by what they are, never by
where they live: a classifier's variant is ``<task>-<inset mode>``, a detector's
``detector-<inset mode>``; the seeds of a variant are its runs.

Every number in the comparison is copied from (or averaged over) the runs' test metrics;
nothing is re-scored here, so the report equals the runs' ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from kvasir_ml.evaluation.bootstrap import DEFAULT_RESAMPLES
from kvasir_ml.experiment.config import DEFAULT_HARD_PAIRS
from kvasir_ml.experiment.ground_truth import ground_truth_summary
from kvasir_ml.io import read_yaml
from kvasir_ml.results_schema import COMPARISON_VERSION, MetricsFile, SplitMetrics, parse_result, read_metrics

log = logging.getLogger(__name__)

FORMAT_VERSION = COMPARISON_VERSION  # comparison.json's schema_version (also written as format_version)
# The comparison table (every classifier is scored on both tasks, so every run has them all).
CLASSIFIER_METRICS = ("macro_ap", "micro_ap", "macro_f1", "subset_accuracy", "top1", "mcc")
# Also aggregated and kept in comparison.json, not in the headline table.
EXTRA_CLASSIFIER_METRICS = ("hamming_loss", "singlelabel_macro_f1", "macro_ap_source_labels", "ece")
DETECTOR_METRICS = ("coco_ap", "coco_ap50", "coco_ap75", "ultralytics_map50", "ultralytics_map50_95")
PREDICTIONS_FILE = "predictions_test.npz"
PREDICTIONS_TTA_FILE = "predictions_test_tta.npz"
STD_NOTE = "sample standard deviation over seeds (ddof=1); null with one seed"
_WANDB_PATH = re.compile(r"^[\w.-]+/[\w.-]+/[\w-]+$")


class CompareError(ValueError):
    """Runs cannot be compared (unreadable, duplicated, inconsistent); the message names them."""


@dataclass
class RunRecord:
    """One finished run: where it came from, its metrics and (optionally) test predictions.

    ``metrics`` may be given as a dict: it is validated into a ``MetricsFile``."""

    source: str  # run folder or W&B run path
    metrics: MetricsFile
    predictions: dict[str, np.ndarray] | None = None
    group: str | None = None  # the run's W&B group (tracking.group)
    predictions_tta: dict[str, np.ndarray] | None = None  # the same with test-time augmentation
    config: dict[str, Any] | None = None  # the run's resolved config (config.yaml / the W&B run config)

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, MetricsFile):
            self.metrics = parse_result(MetricsFile, self.metrics, self.source)


def load_run(run_dir: str | Path) -> RunRecord:
    """Read a finished run folder (``metrics.json``, and ``predictions_test.npz`` when present).

    Raises:
        CompareError: no metrics.json (an unfinished run) or one without test metrics.
    """
    run_dir = Path(run_dir)
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise CompareError(f"{run_dir}: no metrics.json (not a finished run folder)")
    metrics = read_metrics(path)  # a run folder may be handed over: read strictly, errors name the file and field
    if metrics.test is None:
        raise CompareError(f"{path}: has no 'test' metrics")
    predictions, predictions_tta = _load_npz(run_dir / PREDICTIONS_FILE), _load_npz(run_dir / PREDICTIONS_TTA_FILE)
    group, config = None, None
    if (run_dir / "config.yaml").is_file():
        config = read_yaml(run_dir / "config.yaml") or {}
        group = (config.get("tracking") or {}).get("group")
    return RunRecord(str(run_dir), metrics, predictions, group, predictions_tta, config)


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def is_wandb_path(ref: str) -> bool:
    """``entity/project/run_id`` that is not an existing local path."""
    return bool(_WANDB_PATH.match(ref)) and not Path(ref).exists()


def metrics_from_wandb(summary: dict[str, Any], config: dict[str, Any],
                       tables: dict[str, Any] | None = None) -> MetricsFile:
    """Rebuild a ``metrics.json``-like dict from a W&B run (its summary, config and tables).

    The summary holds the flat ``test/<metric>`` scalars the trainers log; the per-class
    table (``test/per_class``: label, ap, f1, threshold, support) gives per-class AP. The
    confusion matrix is not in the summary, so hard-pair confusion is unavailable.

    Args:
        summary: the run summary (flat keys, as ``wandb.Api().run(...).summary``).
        config: the run config (the resolved kvasir_ml config).
        tables: ``{key: {"columns", "data"}}``; optional.

    Returns:
        A ``MetricsFile`` with ``kind``, ``task``, ``model``, ``inset_mode``, ``seed`` and ``test``.
    """
    test: dict[str, Any] = {k[len("test/"):]: v for k, v in summary.items()
            if k.startswith("test/") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    if "train" in config and "eval" in config:  # DetectorConfig
        out = {"kind": "detector", "task": "detection", "model": Path(config.get("model", {}).get("arch", "?")).stem,
               "inset_mode": config.get("data", {}).get("inset_mode"), "seed": config.get("train", {}).get("seed")}
    else:
        model = config.get("model", {})
        out = {"kind": "classifier", "task": model.get("task"), "model": model.get("arch"),
               "inset_mode": model.get("inset_mode"), "seed": config.get("runtime", {}).get("seed")}
        table = (tables or {}).get("test/per_class")
        if table:
            cols = list(table["columns"])
            test["per_class"] = {row[cols.index("label")]: {c: row[i] for i, c in enumerate(cols) if c != "label"}
                                 for row in table["data"]}
    out.update(dataset=None, split_sha256=None, test=test)
    return parse_result(MetricsFile, out, "W&B run summary")


def load_wandb_run(path: str, timeout_s: int = 30) -> RunRecord:
    """Read a run from the W&B servers (``entity/project/run_id``; needs credentials and network)."""
    import tempfile

    import wandb

    try:
        run = wandb.Api(timeout=timeout_s).run(path)
    except Exception as exc:  # no credentials, no network, no such run: all mean "cannot read it"
        raise CompareError(f"{path}: not a local run folder, and reading it as the W&B run "
                           f"entity/project/run_id failed ({type(exc).__name__}: {exc})") from None
    summary = dict(run.summary)
    tables: dict[str, Any] = {}
    ref = summary.get("test/per_class")
    if isinstance(ref, dict) and ref.get("path"):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = run.file(ref["path"]).download(root=tmp, replace=True).name
                tables["test/per_class"] = json.loads(Path(local).read_text(encoding="utf-8"))
            except Exception as exc:  # a missing table only costs the per-class columns
                log.warning("%s: could not read the per-class table (%s)", path, exc)
    return RunRecord(path, metrics_from_wandb(summary, dict(run.config), tables), group=run.group,
                     config=dict(run.config) or None)


def load_runs(refs: Sequence[str | Path]) -> list[RunRecord]:
    """Run folders and/or W&B run paths, in the order given."""
    return [load_wandb_run(str(r)) if is_wandb_path(str(r)) else load_run(r) for r in refs]


def common_group(records: Sequence[RunRecord]) -> str | None:
    """The W&B group all runs share, or None when they have none or several."""
    groups = {r.group for r in records}
    return groups.pop() if len(groups) == 1 else None


def variant_name(metrics: MetricsFile) -> str:
    """``<task>-<inset mode>`` for a classifier, ``detector-<inset mode>`` for a detector."""
    if metrics.kind == "detector":
        return f"detector-{metrics.inset_mode or 'raw'}"
    return f"{metrics.task}-{metrics.inset_mode}"


def aggregate(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}`` over the runs; ``None`` values (undefined metrics) are
    kept in ``values`` but left out of mean/std. ``std`` is the sample std (ddof=1), None for n < 2."""
    vals = [float(v) for v in values if v is not None]
    arr = np.asarray(vals, dtype=np.float64)
    return {
        "mean": float(arr.mean()) if arr.size else None,
        "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
        "n": int(arr.size),
        "values": [None if v is None else float(v) for v in values],
    }


def pair_confusion(test: SplitMetrics, a: str, b: str) -> dict[str, Any] | None:
    """How often classes ``a`` and ``b`` are taken for each other in one run's test confusion.

    Returns:
        ``{"a_as_b", "b_as_a", "support_a", "support_b", "rate"}`` (rate = both errors over
        both supports; None without support), or None when the run has no such matrix.
    """
    names, conf = test.class_names, test.confusion
    if not names or conf is None or a not in names or b not in names:
        return None
    c = np.asarray(conf, dtype=np.int64)
    i, j = names.index(a), names.index(b)
    support = int(c[i].sum() + c[j].sum())
    errors = int(c[i, j] + c[j, i])
    return {"a_as_b": int(c[i, j]), "b_as_a": int(c[j, i]), "support_a": int(c[i].sum()),
            "support_b": int(c[j].sum()), "rate": errors / support if support else None,
            "matrix": [[int(c[i, i]), int(c[i, j])], [int(c[j, i]), int(c[j, j])]]}


def chance_levels(test: SplitMetrics | dict[str, Any]) -> dict[str, float | None]:
    """What a model without skill scores on this test split (from one run's test metrics).

    AP of a random ranking is the label's prevalence, so chance macro AP is the mean
    prevalence over labels with a positive and chance micro AP their pooled positive rate;
    chance top-1 is the majority class's share (always answering it); chance MCC is 0.
    """
    test = test if isinstance(test, SplitMetrics) else SplitMetrics.model_validate(test)
    n = test.n_images or 0
    supports = [pc.get("support") or 0 for pc in test.per_class.values()]
    pos = [s for s in supports if s > 0]
    rows = np.asarray(test.confusion or [[0]], dtype=np.int64).sum(axis=1)
    return {
        "macro_ap": float(np.mean([s / n for s in pos])) if n and pos else None,
        "micro_ap": float(sum(pos) / (n * len(pos))) if n and pos else None,
        "top1": float(rows.max() / rows.sum()) if rows.sum() else None,
        "mcc": 0.0,
    }


def _group(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = {}
    for rec in records:
        groups.setdefault(variant_name(rec.metrics), []).append(rec)
    for name, recs in groups.items():
        seeds = [r.metrics.seed for r in recs if r.metrics.seed is not None]
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            raise CompareError(f"variant {name}: several runs with seed(s) {dup} "
                               f"({', '.join(r.source for r in recs)}); each seed must count once")
    return groups


def _rule(metrics: MetricsFile) -> str:
    """The checkpoint selection rule (runs written before it was recorded used val macro AP)."""
    return metrics.selection.rule if metrics.selection is not None else "val_macro_ap"


def _variant_entry(name: str, recs: list[RunRecord], hard_pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    m0 = recs[0].metrics
    kind = m0.kind
    keys = DETECTOR_METRICS if kind == "detector" else CLASSIFIER_METRICS + EXTRA_CLASSIFIER_METRICS
    tests = [r.metrics.scored("test") for r in recs]
    entry: dict[str, Any] = {
        "name": name, "kind": kind, "task": m0.task, "inset_mode": m0.inset_mode,
        "model": m0.model, "n_seeds": len(recs), "seeds": [r.metrics.seed for r in recs],
        "run_dirs": [r.source for r in recs],
        "split_sha256": sorted({str(r.metrics.split_sha256) for r in recs}),
        "test": {k: aggregate([t.get(k) for t in tests]) for k in keys},
        "selection": sorted({_rule(r.metrics) for r in recs}),
    }
    tta = [r.metrics.test_tta for r in recs]
    if kind != "detector" and all(t is not None for t in tta):
        entry["test_tta"] = {k: aggregate([t.get(k) for t in tta if t is not None]) for k in keys}
    if kind == "detector":
        classes = list(dict.fromkeys(c for t in tests for c in t.per_class_ap))
        entry["per_class_ap"] = {c: aggregate([t.per_class_ap.get(c) for t in tests]) for c in classes}
        return entry
    labels = list(dict.fromkeys(lbl for t in tests for lbl in t.per_class))
    entry["per_class_ap"] = {lbl: aggregate([t.per_class.get(lbl, {}).get("ap") for t in tests])
                             for lbl in labels}
    confusions = [np.asarray(t.confusion, dtype=np.int64) for t in tests if t.confusion is not None]
    entry["confusion_sum"] = np.sum(confusions, axis=0).astype(int).tolist() if confusions else None
    entry["hard_pairs"] = {}
    for a, b in hard_pairs:
        per_run = [pair_confusion(t, a, b) for t in tests]
        got = [p for p in per_run if p is not None]
        if not got:
            continue
        entry["hard_pairs"][f"{a} vs {b}"] = {
            "a": a, "b": b, "n_runs": len(got),
            **{k: aggregate([p[k] for p in got]) for k in ("a_as_b", "b_as_a", "rate")},
            "matrix_sum": np.sum([p["matrix"] for p in got], axis=0).astype(int).tolist(),
            "support_a": got[0]["support_a"], "support_b": got[0]["support_b"],
        }
    return entry


def paired_sections(records: Sequence[RunRecord], n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                    label_subsets: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The paired-bootstrap sections of a comparison (see ``experiment.paired``).

    Returns:
        ``paired`` (multi- vs single-label within an inset mode), ``inset_ablation`` (raw or
        branch vs masked within a task), ``paired_tta`` / ``inset_ablation_tta`` (the same on
        TTA predictions; empty without them) and ``paired_bootstrap`` (method, resamples, seed,
        and per pair whether both sides used the same checkpoint selection rule).
    """
    from kvasir_ml.experiment.paired import BOOTSTRAP_NOTE, aa_control, ablation_pairs, pair_intervals, task_pairs

    plain: dict[str, list] = {}
    tta: dict[str, list] = {}
    selection: dict[str, set[str]] = {}
    for rec in records:
        m = rec.metrics
        if m.kind != "classifier":
            continue
        name = variant_name(m)
        selection.setdefault(name, set()).add(_rule(m))
        if rec.predictions is not None:
            plain.setdefault(name, []).append((m.seed, rec.predictions, m.scored("test").thresholds))
        if rec.predictions_tta is not None and m.test_tta is not None:
            tta.setdefault(name, []).append((m.seed, rec.predictions_tta, m.test_tta.thresholds))
    variants = list(selection)
    pairs, ablation = task_pairs(variants), ablation_pairs(variants)
    same_rule = {f"{a}-vs-{b}": len(selection[a] | selection[b]) == 1 for a, b in [*pairs, *ablation]}
    for key, ok in same_rule.items():
        if not ok:
            log.warning("%s: the two variants' checkpoints were selected by different rules", key)
    return {
        "paired": pair_intervals(plain, pairs, n_resamples, seed, label_subsets),
        "inset_ablation": pair_intervals(plain, ablation, n_resamples, seed, label_subsets),
        "paired_tta": pair_intervals(tta, pairs, n_resamples, seed, label_subsets),
        "inset_ablation_tta": pair_intervals(tta, ablation, n_resamples, seed, label_subsets),
        "aa_control": aa_control(plain, label_subsets, seed=seed) if n_resamples else None,
        "paired_bootstrap": {"method": BOOTSTRAP_NOTE, "unit": "test image", "n_resamples": n_resamples,
                             "seed": seed, "label_subsets": {k: list(v) for k, v in (label_subsets or {}).items()},
                             "same_selection_rule": same_rule},
    }


def compare_runs(records: Sequence[RunRecord],
                 hard_pairs: Sequence[tuple[str, str]] = DEFAULT_HARD_PAIRS, n_resamples: int = DEFAULT_RESAMPLES,
                 bootstrap_seed: int = 0, label_subsets: Mapping[str, Sequence[str]] | None = None,
                 design: dict[str, Any] | None = None) -> dict[str, Any]:
    """Group runs into variants, aggregate their test metrics over seeds, add paired intervals.

    Args:
        records: finished runs (``load_run`` / ``load_wandb_run``), any order.
        hard_pairs: source-class pairs whose mutual confusion is reported.
        n_resamples: paired-bootstrap resamples (0: no paired intervals).
        bootstrap_seed: resampling seed.
        label_subsets: ``{name: labels}``: the paired sections add ``macro_ap[<name>]``.
        design: what ``design.check_controlled`` found before training (an experiment); None =
            check the runs' own configs (``design.design_of_runs``: runs gathered by hand).

    Returns:
        The comparison dict (written as ``comparison.json``, schema ``results_schema.ComparisonFile``):
        ``schema_version`` (and its former name ``format_version``),
        ``metrics`` (table columns), ``detector_metrics``, ``std`` (its definition),
        ``datasets``, ``split_sha256`` (distinct values), ``same_split``, ``hard_pairs``,
        ``label_names``, ``class_names``, ``chance`` (``chance_levels`` of the test split) and ``variants`` {name: {name, kind, task,
        inset_mode, model, n_seeds, seeds, run_dirs, split_sha256, test: {metric: {mean, std,
        n, values}}, per_class_ap: {label: {...}}, confusion_sum (single-label task, summed
        over seeds), hard_pairs: {"a vs b": {...}}, selection: [rules], test_tta (when the
        runs scored TTA)}} in the order the variants first appear in ``records``; plus the
        ``paired_sections`` keys (``paired``: ``{"<multi>-vs-<single>": {metric: {"diff",
        "ci95": [lo, hi], "star", "verdict", ...}}}``, ``inset_ablation``, their ``_tta`` twins,
        ``aa_control``, ``paired_bootstrap``) and ``design`` (``{"controlled", "differences", ...}``;
        an uncontrolled design leaves the multi- vs single-label pairs without a ``*``).

    Raises:
        CompareError: no runs, or one variant with the same seed twice.
    """
    if not records:
        raise CompareError("no runs to compare")
    groups = _group(records)
    splits = sorted({str(r.metrics.split_sha256) for r in records if r.metrics.split_sha256})
    classifier = [r.metrics for r in records if r.metrics.kind == "classifier"]
    label_names = next((m.label_names for m in classifier if m.label_names), None)
    class_names = next((m.class_names for m in classifier if m.class_names), None)
    if label_names is None and classifier:
        label_names = list(dict.fromkeys(lbl for m in classifier for lbl in m.scored("test").per_class))
    comparison: dict[str, Any] = {
        "schema_version": FORMAT_VERSION,
        "format_version": FORMAT_VERSION,
        "metrics": list(CLASSIFIER_METRICS),
        "detector_metrics": list(DETECTOR_METRICS),
        "std": STD_NOTE,
        "datasets": sorted({str(r.metrics.dataset) for r in records if r.metrics.dataset}),
        "split_sha256": splits,
        "same_split": len(splits) <= 1,
        "ground_truth": ground_truth_summary([r.metrics for r in records]),  # folder or verified labels on test
        "hard_pairs": [list(p) for p in hard_pairs],
        "label_names": label_names,
        "class_names": class_names,
        "variants": {name: _variant_entry(name, recs, hard_pairs) for name, recs in groups.items()},
    }
    if classifier:
        comparison["chance"] = chance_levels(classifier[0].scored("test"))
        known = {n for m in classifier for n in m.scored("test").class_names or []}
        missing = [f"{a} vs {b}" for a, b in hard_pairs if a not in known or b not in known]
        if missing:  # a typo in hard_pairs must not just make the section vanish
            log.warning("hard pairs %s: class names not among the runs' classes %s", missing, sorted(known))
        comparison["hard_pairs_missing"] = missing
    if not comparison["same_split"]:
        log.warning("the runs were trained on %d different splits: the comparison is not like for like", len(splits))
    elif n_resamples > 0:
        comparison.update(paired_sections(records, n_resamples, bootstrap_seed, label_subsets))
    comparison["design"] = design if design is not None else records_design(records)
    if not comparison["design"].get("controlled"):
        withhold_verdicts(comparison, ("paired", "paired_tta"))
    return comparison


def records_design(records: Sequence[RunRecord]) -> dict[str, Any]:
    """``design.design_of_runs`` of the classifier runs (their configs as saved with them)."""
    from kvasir_ml.experiment.design import design_of_runs

    return design_of_runs([(variant_name(r.metrics), r.metrics.seed, r.config, r.source) for r in records
                           if r.metrics.kind == "classifier"])


def withhold_verdicts(comparison: dict[str, Any], sections: Sequence[str]) -> None:
    """In place: no ``*`` and the verdict "uncontrolled design" in the given paired sections."""
    from kvasir_ml.evaluation.verdict import UNCONTROLLED

    for section in sections:
        for pair in (comparison.get(section) or {}).values():
            for res in pair.values():
                res.update(star=False, verdict=UNCONTROLLED)


def pooled_predictions(records: Sequence[RunRecord]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Test label targets and scores per classifier variant, concatenated over its seeds.

    Only runs that saved ``predictions_test.npz`` contribute; a variant none of whose runs
    did has no entry.

    Returns:
        ({variant: (y_labels (N, L), label_scores (N, L))}, label names).

    Raises:
        CompareError: two runs with different label names.
    """
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    label_names: list[str] | None = None
    for rec in records:
        pred = rec.predictions
        if pred is None or rec.metrics.kind != "classifier":
            continue
        names = [str(n) for n in pred["label_names"]]
        if label_names is None:
            label_names = names
        elif names != label_names:
            raise CompareError(f"{rec.source}: label names {names} differ from the other runs' {label_names}")
        curves.setdefault(variant_name(rec.metrics), []).append((pred["y_labels"], pred["label_scores"]))
    pooled = {v: (np.concatenate([t for t, _ in parts]), np.concatenate([s for _, s in parts]))
              for v, parts in curves.items()}
    return pooled, label_names or []
