"""Experiment config, run planning and aggregation rules (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvasir_ml.config import ConfigError
from kvasir_ml.experiment.compare import (
    CompareError,
    RunRecord,
    aggregate,
    chance_levels,
    compare_runs,
    is_wandb_path,
    metrics_from_wandb,
)
from kvasir_ml.experiment.config import load_experiment_config
from kvasir_ml.experiment.orchestrate import ExperimentData, plan_classifier_runs, plan_detector_run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["experiment_compare.yaml", "experiment_compare_tiny.yaml"])
def test_shipped_configs_load(name):
    cfg = load_experiment_config(REPO / "configs" / name)
    assert len(cfg.seeds) >= 3
    variants = {f"{task}-{mode}" for task, modes in cfg.variants.items() for mode in modes}
    assert {"multilabel-branch", "multilabel-masked", "singlelabel-masked"} <= variants


def test_full_config_trains_every_inset_mode_for_both_tasks():
    cfg = load_experiment_config(REPO / "configs" / "experiment_compare.yaml")
    assert cfg.variants == {"multilabel": ["raw", "masked", "branch"], "singlelabel": ["raw", "masked", "branch"]}


@pytest.mark.parametrize("override, message", [
    ("bogus=1", "bogus"),
    ("seeds=[0,0]", "distinct"),
    ("variants={multilabel: [sideways]}", "variants"),
])
def test_bad_configs_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment_config(REPO / "configs" / "experiment_compare_tiny.yaml", [override])


def test_plan_pins_data_split_seed_and_group(tmp_path):
    cfg = load_experiment_config(REPO / "configs" / "experiment_compare_tiny.yaml",
                                 ["seeds=[3,4,5]", "overrides=[optim.epochs=2]", "tracking.tags=[x]"])
    data = ExperimentData(tmp_path / "a.json", tmp_path, tmp_path / "split.json", "abc", tmp_path / "cache")
    planned = plan_classifier_runs(cfg, data, tmp_path)
    assert [(p.variant, p.seed) for p in planned][:3] == [("multilabel-raw", 3), ("multilabel-raw", 4),
                                                          ("multilabel-raw", 5)]
    assert len(planned) == sum(len(modes) for modes in cfg.variants.values()) * 3
    for p in planned:
        c = p.config
        assert f"{c.model.task}-{c.model.inset_mode}" == p.variant and c.runtime.seed == p.seed
        assert c.data.split_file == str(tmp_path / "split.json") and c.data.cache_dir == str(tmp_path / "cache")
        assert c.optim.epochs == 2 and c.tracking.group == "compare-tiny" and "x" in c.tracking.tags
        assert p.run_dir == tmp_path / "runs" / p.variant / f"seed{p.seed}"
    det = plan_detector_run("configs/detector_tiny.yaml", ["train.epochs=1"], cfg, data, tmp_path)
    assert det.variant == "detector-raw" and det.config.data.split_file == str(tmp_path / "split.json")
    assert det.config.tracking.group == "compare-tiny"


def test_aggregate_uses_sample_std_and_skips_undefined():
    agg = aggregate([0.5, None, 0.7])
    assert agg["mean"] == pytest.approx(0.6) and agg["std"] == pytest.approx(0.1414213562, rel=1e-6)
    assert agg["n"] == 2 and agg["values"] == [0.5, None, 0.7]
    assert aggregate([0.3]) == {"mean": 0.3, "std": None, "n": 1, "values": [0.3]}
    assert aggregate([None])["mean"] is None


def _record(task, mode, seed, ap):
    test = {"macro_ap": ap, "per_class": {"polyp": {"ap": ap, "support": 2}}, "n_images": 4,
            "confusion": [[2, 0], [1, 1]], "class_names": ["esophagitis", "normal-z-line"]}
    return RunRecord(f"{task}-{mode}-{seed}", {"kind": "classifier", "task": task, "inset_mode": mode,
                                               "seed": seed, "split_sha256": "s", "test": test})


def test_compare_groups_by_variant_and_rejects_a_seed_twice():
    recs = [_record("multilabel", "branch", 0, 0.5), _record("singlelabel", "masked", 0, 0.4),
            _record("multilabel", "branch", 1, 0.7)]
    comparison = compare_runs(recs, [("esophagitis", "normal-z-line"), ("esophagitis", "typo")])
    assert comparison["hard_pairs_missing"] == ["esophagitis vs typo"]
    entry = comparison["variants"]["multilabel-branch"]
    assert entry["n_seeds"] == 2 and entry["test"]["macro_ap"]["mean"] == pytest.approx(0.6)
    pair = entry["hard_pairs"]["esophagitis vs normal-z-line"]
    assert pair["matrix_sum"] == [[4, 0], [2, 2]] and pair["rate"]["mean"] == pytest.approx(0.25)
    assert comparison["chance"]["macro_ap"] == pytest.approx(0.5)
    with pytest.raises(CompareError, match="seed"):
        compare_runs([*recs, _record("multilabel", "branch", 1, 0.1)])


def test_chance_levels():
    test = {"n_images": 10, "per_class": {"a": {"support": 5}, "b": {"support": 1}, "c": {"support": 0}},
            "confusion": [[6, 0], [3, 1]]}
    chance = chance_levels(test)
    assert chance == {"macro_ap": pytest.approx(0.3), "micro_ap": pytest.approx(0.3), "top1": 0.6, "mcc": 0.0}


def test_wandb_paths_and_detector_summaries(tmp_path):
    assert is_wandb_path("team/kvasir-ml/abc123")
    assert not is_wandb_path(str(tmp_path)) and not is_wandb_path("runs/x")
    metrics = metrics_from_wandb({"test/coco_ap": 0.2, "test/coco_ap50": 0.4, "val/coco_ap": 0.1},
                                 {"data": {"inset_mode": "raw"}, "model": {"arch": "yolov8n.yaml"},
                                  "train": {"seed": 3}, "eval": {}})
    assert metrics.kind == "detector" and metrics.seed == 3 and metrics.model == "yolov8n"
    assert metrics.scored("test").model_dump(exclude_unset=True) == {"coco_ap": 0.2, "coco_ap50": 0.4}


def test_shipped_comparison_configs_are_controlled(tmp_path):
    """The GPU and tiny comparisons pass the design check: within an inset mode the two
    tasks' runs differ only in the task (and the multi-label loss's own keys)."""
    from kvasir_ml.experiment.design import check_controlled, config_differences

    data = ExperimentData(Path("c.json"), Path("."), Path("s.json"), "abc", Path("cache"))
    for name in ("experiment_compare.yaml", "experiment_compare_tiny.yaml"):
        cfg = load_experiment_config(REPO / "configs" / name)
        design = check_controlled(plan_classifier_runs(cfg, data, tmp_path))
        assert design["controlled"] and design["selection"] == "last"
        assert "multilabel-masked-vs-singlelabel-masked" in design["pairs"]
    a = {"model": {"task": "multilabel", "dropout": 0.2}, "loss": {"pos_weight": True}, "tracking": {"group": "x"}}
    b = {"model": {"task": "singlelabel", "dropout": 0.0}, "loss": {"pos_weight": False}, "tracking": {"group": "y"}}
    assert config_differences(a, b) == ["model.dropout"]
