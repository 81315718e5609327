"""The A/A control counts false stars (and would catch true ones), and runs gathered by hand are
checked for a controlled design before they get a verdict (on real run folders:
test_experiment_compare.py, which trains them once for the module)."""

from __future__ import annotations

import copy

import numpy as np

from kvasir_ml.evaluation.classification import label_scores_to_class_proba
from kvasir_ml.experiment.design import design_of_runs
from kvasir_ml.experiment.paired import aa_control

MATRIX = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=float)


def _predictions(rng, y_labels, y_class, skill):
    scores = 1 / (1 + np.exp(-(skill * (2 * y_labels - 1) + rng.normal(size=y_labels.shape))))
    return {"y_labels": y_labels, "label_scores": scores, "y_class": y_class,
            "class_proba": label_scores_to_class_proba(scores, MATRIX), "label_names": np.array(list("abcd"))}


def _variant(rng, skills):
    y_class = rng.integers(0, 4, 150)
    y_labels = MATRIX[y_class].astype(np.int64)
    return [(seed, _predictions(rng, y_labels, y_class, s), [0.5] * 4) for seed, s in enumerate(skills)]


def test_aa_control_counts_cells_and_its_stars_are_rare_under_the_null():
    rng = np.random.default_rng(0)
    scores = {"multilabel-masked": _variant(rng, rng.normal(1.0, 0.1, 6)),
              "singlelabel-masked": _variant(rng, rng.normal(1.0, 0.1, 6)),
              "multilabel-raw": _variant(rng, [1.0] * 3)}  # 3 seeds: no halves of 3, left out
    aa = aa_control(scores, {"ab": ["a", "b"]}, n_resamples=100)
    assert set(aa["variants"]) == {"multilabel-masked", "singlelabel-masked"}
    assert aa["variants"]["multilabel-masked"]["splits"] == 10 and aa["seeds_per_side"] == 3
    assert aa["cells"] == 2 * 10 * 7  # 2 variants x 10 half-splits x (6 metrics + the subset)
    assert aa["rate"] == aa["starred"] / aa["cells"] and aa["rate"] <= 0.1


def test_aa_control_would_see_halves_that_really_differ():
    rng = np.random.default_rng(1)
    scores = {"multilabel-masked": _variant(rng, [2.5, 2.5, 2.5, 0.3, 0.3, 0.3])}  # seeds 0-2 strong
    aa = aa_control(scores, n_resamples=100)
    stars = aa["variants"]["multilabel-masked"]["starred_cells"]
    assert any("macro_ap seeds [0, 1, 2] vs [3, 4, 5]" in c for c in stars), stars


def test_design_of_runs_names_what_differs():
    base = {"name": "x", "model": {"task": "multilabel", "inset_mode": "masked"}, "optim": {"lr": 0.001, "epochs": 6},
            "runtime": {"seed": 0}, "eval": {"select": "last"}, "loss": {"name": "bce", "label_smoothing": 0.0}}
    single = copy.deepcopy(base)
    single["model"]["task"] = "singlelabel"
    ok = design_of_runs([("multilabel-masked", 0, base, "a"), ("singlelabel-masked", 0, single, "b")])
    assert ok["controlled"] and ok["differences"] == []
    other = copy.deepcopy(single)
    other["optim"].update(lr=0.003, epochs=8)
    other["runtime"]["seed"] = 1
    bad = design_of_runs([("multilabel-masked", 0, base, "a"), ("singlelabel-masked", 1, other, "b")])
    assert not bad["controlled"] and "optim.epochs" in bad["differences"][0] and "optim.lr" in bad["differences"][0]
    assert "runtime.seed" not in bad["differences"][0]  # other seeds are not a design difference
    unknown = design_of_runs([("multilabel-masked", 0, base, "a"), ("singlelabel-masked", 0, None, "b")])
    assert not unknown["controlled"] and "b: no config" in unknown["differences"][0]
