"""The comparison from real tiny runs: numbers equal the runs' metrics.json, the report, W&B, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from kvasir_ml.results_schema import Aggregate
from kvasir_ml.cli import main as cli_main
from kvasir_ml.experiment.compare import (
    CLASSIFIER_METRICS,
    RunRecord,
    load_run,
    metrics_from_wandb,
)
from kvasir_ml.experiment.report import fmt
from wandb_offline import read_offline_run

SEEDS = (0, 1)
# configs/experiment_compare_tiny.yaml shrunk: 3 variants x 2 seeds of 1-epoch ResNet18s on 48 images,
# test-time augmentation on (its own rows), 300 bootstrap resamples.
CLI_ARGS = ["--config", "configs/experiment_compare_tiny.yaml", "--no-progress", "name=test-compare",
            "data.synthetic_n=48", "data.fractions=[0.5,0.25,0.25]", "bootstrap_resamples=300",
            "variants={multilabel: [masked, branch], singlelabel: [masked]}", "seeds=[0,1]"]
TINY_OVERRIDES = "overrides=[optim.epochs=1,data.image_size_px=32,runtime.batch_size=8,eval.tta=true]"
PAIR, ABLATION = "multilabel-masked-vs-singlelabel-masked", "multilabel-branch-vs-multilabel-masked"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> dict:
    """``kvasir-ml experiment compare`` on the shrunken tiny config, W&B offline."""
    out = tmp_path_factory.mktemp("experiment")
    assert cli_main(["experiment", "compare", "--out", str(out), *CLI_ARGS, TINY_OVERRIDES]) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    run_dirs = [d for entry in comparison["variants"].values() for d in entry["run_dirs"]]
    split_sha256 = json.loads((out / "split.json").read_text())["sha256"]
    return {"out": out, "comparison": comparison, "run_dirs": run_dirs, "split_sha256": split_sha256}


def _metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def test_comparison_equals_runs_metrics(experiment):
    comparison = json.loads((experiment["out"] / "comparison.json").read_text())
    assert list(comparison["variants"]) == ["multilabel-masked", "multilabel-branch", "singlelabel-masked"]
    assert comparison["same_split"] and comparison["split_sha256"] == [experiment["split_sha256"]]
    for name, entry in comparison["variants"].items():
        assert entry["n_seeds"] == len(SEEDS) and entry["seeds"] == list(SEEDS)
        runs = [_metrics(d) for d in entry["run_dirs"]]
        assert [f"{m['task']}-{m['inset_mode']}" for m in runs] == [name] * len(SEEDS)
        for key in CLASSIFIER_METRICS:
            values = np.array([m["test"][key] for m in runs], dtype=float)
            assert entry["test"][key]["values"] == [m["test"][key] for m in runs]
            assert entry["test"][key]["mean"] == pytest.approx(values.mean(), abs=1e-12)
            assert entry["test"][key]["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        for label, agg in entry["per_class_ap"].items():
            assert agg["values"] == [m["test"]["per_class"][label]["ap"] for m in runs]
        conf = np.sum([m["test"]["confusion"] for m in runs], axis=0)
        assert entry["confusion_sum"] == conf.tolist()
        names = runs[0]["test"]["class_names"]
        pair = entry["hard_pairs"]["esophagitis vs normal-z-line"]
        i, j = names.index("esophagitis"), names.index("normal-z-line")
        assert pair["matrix_sum"] == [[conf[i, i], conf[i, j]], [conf[j, i], conf[j, j]]]
        assert pair["a_as_b"]["values"] == [m["test"]["confusion"][i][j] for m in runs]


def test_markdown_shows_the_same_numbers(experiment):
    comparison = experiment["comparison"]
    md = (experiment["out"] / "comparison.md").read_text()
    for name, entry in comparison["variants"].items():
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} | {entry['n_seeds']} |"))
        cells = [c.strip() for c in row.strip("|").split("|")][2:]
        assert cells == [fmt(Aggregate.model_validate(entry["test"][k])) for k in CLASSIFIER_METRICS]
    assert "esophagitis / normal-z-line" in md and "dyed-lifted-polyps / dyed-resection-margins" in md
    for key, rel in comparison["plots"].items():
        assert (experiment["out"] / rel).is_file(), key
        assert f"]({rel})" in md


def test_wandb_compare_run_holds_the_table(experiment):
    out, comparison = experiment["out"], experiment["comparison"]
    run = read_offline_run(out / "wandb")
    assert run["job_type"] == "compare" and run["group"] == "test-compare"
    assert run["exit_code"] == 0
    table = run["tables"]["comparison"]
    rows = {row[0]: dict(zip(table["columns"], row)) for row in table["data"]}
    assert set(rows) == set(comparison["variants"])
    for name, entry in comparison["variants"].items():
        for key in CLASSIFIER_METRICS:
            assert rows[name][f"{key}_mean"] == pytest.approx(entry["test"][key]["mean"])
            assert run["summary"][f"{name}/{key}_mean"] == pytest.approx(entry["test"][key]["mean"])
        assert run["summary"][f"{name}/n_seeds"] == len(SEEDS)
    assert "per_class_ap" in run["tables"] and "hard_pairs" in run["tables"]
    assert {row[1] for row in run["tables"]["paired"]["data"]} == {PAIR, ABLATION}
    # the training runs share the compare run's group
    for entry in comparison["variants"].values():
        for run_dir in entry["run_dirs"]:
            assert read_offline_run(Path(run_dir) / "wandb")["group"] == "test-compare"


def test_wandb_summary_rebuilds_the_metrics(experiment):
    """``runs compare`` on W&B paths reads summaries: they must carry the metrics.json numbers."""
    run_dir = experiment["run_dirs"][0]
    offline = read_offline_run(Path(run_dir) / "wandb")
    rebuilt = metrics_from_wandb(offline["summary"], offline["config"], offline["tables"])
    saved = _metrics(run_dir)
    assert (rebuilt.kind, rebuilt.task, rebuilt.inset_mode, rebuilt.seed) == \
        ("classifier", saved["task"], saved["inset_mode"], saved["seed"])
    for key in CLASSIFIER_METRICS:
        assert rebuilt.scored("test").get(key) == pytest.approx(saved["test"][key])
    for label, pc in saved["test"]["per_class"].items():
        assert rebuilt.scored("test").per_class[label]["ap"] == pc["ap"]
    # calibration reaches W&B: ECE before/after, the per-label table and the reliability diagram
    assert rebuilt.scored("test").ece == pytest.approx(saved["test"]["ece"])
    assert rebuilt.scored("test").ece_uncalibrated == pytest.approx(saved["test"]["ece_uncalibrated"])
    assert offline["tables"]["test/calibration"]["columns"] == ["label", "ece_before", "ece_after", "temperature"]
    assert any("reliability" in key for key in offline["summary"])


def test_rerun_reuses_finished_runs_and_rejects_another_config(experiment, capsys):
    out = experiment["out"]
    stamps = {d: (Path(d) / "metrics.json").stat().st_mtime_ns for d in experiment["run_dirs"]}
    assert cli_main(["experiment", "compare", "--out", str(out), *CLI_ARGS, TINY_OVERRIDES]) == 0
    assert {d: (Path(d) / "metrics.json").stat().st_mtime_ns for d in experiment["run_dirs"]} == stamps
    again = json.loads((out / "comparison.json").read_text())
    assert again["variants"]["multilabel-branch"]["test"] == \
        experiment["comparison"]["variants"]["multilabel-branch"]["test"]
    capsys.readouterr()
    changed = TINY_OVERRIDES.replace("optim.epochs=1", "optim.epochs=2")
    assert cli_main(["experiment", "compare", "--out", str(out), *CLI_ARGS, changed]) == 2
    assert "optim.epochs" in capsys.readouterr().err


def test_runs_compare_cli_from_run_folders(experiment, tmp_path, capsys):
    run_dirs = [str(d) for d in experiment["run_dirs"]]
    assert cli_main(["runs", "compare", *run_dirs]) == 0
    printed = capsys.readouterr().out
    assert "| multilabel-branch | 2 |" in printed and not (tmp_path / "comparison.json").exists()

    out = tmp_path / "cmp"
    assert cli_main(["runs", "compare", *run_dirs, "--out", str(out)]) == 0
    written = json.loads((out / "comparison.json").read_text())
    for name, entry in experiment["comparison"]["variants"].items():
        assert written["variants"][name]["test"] == entry["test"]
    assert (out / "comparison.md").is_file()
    compare_run = read_offline_run(out / "wandb")  # joins the runs' group by default
    assert compare_run["job_type"] == "compare" and compare_run["group"] == "test-compare"

    quiet = tmp_path / "quiet"
    assert cli_main(["runs", "compare", *run_dirs, "--out", str(quiet), "--tracking-mode", "disabled"]) == 0
    assert (quiet / "comparison.json").is_file() and not (quiet / "wandb").exists()


def test_runs_compare_marks_an_uncontrolled_pair_and_withholds_stars(experiment, tmp_path, capsys):
    """Real run folders from the tiny experiment, one single-label config edited as if trained
    with another budget: the printed table and comparison.json say uncontrolled, no star."""
    comparison = experiment["comparison"]
    multi, single = (Path(comparison["variants"][v]["run_dirs"][0]) for v in ("multilabel-masked", "singlelabel-masked"))
    edited = tmp_path / "single-edited"
    shutil.copytree(single, edited)
    cfg = yaml.safe_load((edited / "config.yaml").read_text())
    cfg["optim"]["epochs"] = 8
    (edited / "config.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert cli_main(["runs", "compare", str(multi), str(edited), "--out", str(tmp_path / "cmp"),
                     "--tracking-mode", "disabled"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert result["design"]["controlled"] is False and "optim.epochs" in result["design"]["differences"][0]
    assert "UNCONTROLLED" in printed and "]*" not in printed
    pair = result["paired"]["multilabel-masked-vs-singlelabel-masked"]
    assert all(not r["star"] and r["verdict"] == "uncontrolled design: no verdict" for r in pair.values())
    # the untouched pair is controlled
    assert cli_main(["runs", "compare", str(multi), str(single)]) == 0
    assert "UNCONTROLLED" not in capsys.readouterr().out


def test_runs_compare_rejects_unfinished_and_duplicate_runs(experiment, tmp_path, capsys):
    assert cli_main(["runs", "compare", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    run_dir = str(experiment["run_dirs"][0])
    assert cli_main(["runs", "compare", run_dir, run_dir]) == 2
    assert "seed" in capsys.readouterr().err


def test_saved_test_predictions_match_metrics_and_feed_the_pr_overlay(experiment):
    from sklearn.metrics import average_precision_score

    for run_dir in experiment["run_dirs"]:
        record = load_run(run_dir)
        assert isinstance(record, RunRecord) and record.group == "test-compare"
        pred, test = record.predictions, record.metrics.scored("test")
        assert pred is not None, f"{run_dir}: train_classifier wrote no predictions_test.npz"
        assert pred["y_labels"].shape == pred["label_scores"].shape == (test.n_images, len(pred["label_names"]))
        for c, label in enumerate(pred["label_names"]):
            if pred["y_labels"][:, c].any():
                ap = average_precision_score(pred["y_labels"][:, c], pred["label_scores"][:, c])
                assert ap == pytest.approx(test.per_class[str(label)]["ap"], abs=1e-12)
    assert (experiment["out"] / experiment["comparison"]["plots"]["pr_overlay"]).is_file()


def test_paired_intervals_and_controlled_design(experiment):
    comparison = experiment["comparison"]
    assert comparison["design"]["controlled"] and comparison["design"]["selection"] == "last"
    assert list(comparison["paired"]) == [PAIR] and list(comparison["inset_ablation"]) == [ABLATION]
    v = comparison["variants"]
    for section, (a, b) in (("paired", ("multilabel-masked", "singlelabel-masked")),
                            ("inset_ablation", ("multilabel-branch", "multilabel-masked"))):
        result = comparison[section][f"{a}-vs-{b}"]
        for key in CLASSIFIER_METRICS:
            res = result[key]
            assert res["diff"] == pytest.approx(v[a]["test"][key]["mean"] - v[b]["test"][key]["mean"], abs=1e-9)
            lo, hi = res["ci95"]
            assert lo <= hi and res["n_valid"] > 0
            # seed against seed: the runs' own test metrics (metrics.json)
            want = {str(sd): x - y for sd, x, y in zip(v[a]["seeds"], v[a]["test"][key]["values"],
                                                        v[b]["test"][key]["values"])}
            assert v[a]["seeds"] == v[b]["seeds"] and res["per_seed"] == pytest.approx(want, abs=1e-9)
    for entry in v.values():
        assert entry["selection"] == ["last"]
        for m in (_metrics(d) for d in entry["run_dirs"]):
            assert m["selection"]["rule"] == "last" and m["selection"]["epoch"] == 1
    boot = comparison["paired_bootstrap"]
    assert boot["n_resamples"] == 300 and boot["unit"] == "test image"
    md = (experiment["out"] / "comparison.md").read_text()
    assert "## Inset ablation" in md and "multilabel-masked − singlelabel-masked" in md
    assert "Checkpoint selection" in md and "paired bootstrap over test images" in md
    seeds = list(comparison["paired"][PAIR]["macro_ap"]["per_seed"].values())
    row = next(line for line in md.splitlines() if line.startswith("| multilabel-masked − singlelabel-masked |")
               and "…" in line)
    assert row.split("|")[2].strip() == f"{min(seeds):+.3f} … {max(seeds):+.3f}"
    assert (experiment["out"] / comparison["plots"]["paired_differences"]).is_file()


def test_tta_is_reported_apart_and_leaves_the_untouched_numbers_alone(experiment):
    comparison = experiment["comparison"]
    assert PAIR in comparison["paired_tta"]
    md = (experiment["out"] / "comparison.md").read_text()
    assert "| multilabel-masked +TTA | 2 |" in md
    for run_dir in experiment["run_dirs"]:
        record = load_run(run_dir)
        plain, tta = record.predictions, record.predictions_tta
        assert tta is not None and list(tta["file_names"]) == list(plain["file_names"])
        assert not np.allclose(plain["label_scores"], tta["label_scores"])
        m = record.metrics
        assert m.scored("test_tta").tta.startswith("dihedral-8") and m.scored("test").get("tta") is None


@pytest.mark.parametrize("override, message", [
    ("eval.select=val_macro_ap", "eval.select=val_macro_ap"),
    ("loss.label_smoothing=0.1", "label_smoothing"),
    ("loss.name=asl", "loss.name=asl"),
])
def test_an_uncontrolled_comparison_is_refused_before_training(tmp_path, capsys, override, message):
    args = [*CLI_ARGS, TINY_OVERRIDES.replace("]", f",{override}]")]
    assert cli_main(["experiment", "compare", "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert "not a controlled comparison" in err and message in err
    assert not (tmp_path / "x" / "runs").exists()
