"""Typed result files: round trips, old files without a version, malformed files refused by name."""

from __future__ import annotations

import json
import math

import pytest

from kvasir_ml.experiment.compare import CompareError, load_run
from kvasir_ml.experiment.tables import metrics_table
from kvasir_ml.inference.stream import read_predictions
from kvasir_ml.results_schema import (
    MetricsFile,
    ResultsError,
    prediction_line,
    read_comparison,
    read_metrics,
    write_metrics,
    write_result,
)


def _classifier_metrics() -> dict:
    test = {"n_images": 4, "macro_ap": 0.75, "micro_ap": 0.5, "top1": 0.5, "mcc": float("nan"), "thresholds": [0.3, 0.6],
            "per_class": {"polyp": {"ap": 0.75, "support": 2}}, "confusion": [[1, 1], [0, 2]],
            "class_names": ["a", "b"], "calibration": {"bins": 15}, "something_new": {"x": [1, 2]}}
    return {"kind": "classifier", "task": "multilabel", "model": "resnet18", "inset_mode": "masked", "seed": 1,
            "dataset": "synthetic", "split_sha256": None, "n_images": {"train": 8, "val": 4, "test": 4},
            "ground_truth": {"kind": "folder", "n_test_images": 4, "n_test_left_out": 0},
            "label_names": ["polyp", "normal"], "selection": {"rule": "last", "description": "d", "epoch": 2},
            "history": [{"epoch": 1, "train_loss": 0.5}], "val": dict(test), "test": test}


def test_metrics_round_trip_keeps_every_key_and_adds_the_version(tmp_path):
    raw = _classifier_metrics()
    path = tmp_path / "metrics.json"
    write_metrics(path, raw)
    written = json.loads(path.read_text())
    assert written["schema_version"] == 1
    assert {k: v for k, v in written.items() if k != "schema_version"}.keys() == raw.keys()
    assert written["test"]["something_new"] == {"x": [1, 2]}  # extras survive
    assert math.isnan(written["test"]["mcc"])  # NaN stays a number, not null
    back = read_metrics(path)
    assert back.test is not None and back.test.macro_ap == 0.75 and back.test.per_class["polyp"]["ap"] == 0.75
    assert back.selection is not None and back.selection.rule == "last" and back.seed == 1
    write_metrics(tmp_path / "again.json", back)
    assert (tmp_path / "again.json").read_text() == path.read_text()


def test_a_file_without_a_version_loads_as_version_1(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"kind": "detector", "task": "detection", "test": {"coco_ap": 0.2}}))
    m = read_metrics(path)
    assert m.schema_version == 1 and m.kind == "detector" and m.scored("test").coco_ap == 0.2
    assert m.ground_truth is None and m.selection is None


@pytest.mark.parametrize("change, field", [
    ({"test": {"macro_ap": "high"}}, "test.macro_ap"),
    ({"kind": "regressor"}, "kind"),
    ({"n_images": {"test": "four"}}, "n_images.test"),
    ({"selection": {"epoch": [1]}}, "selection.epoch"),
])
def test_a_malformed_metrics_file_is_refused_naming_file_and_field(tmp_path, change, field):
    path = tmp_path / "run" / "metrics.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**_classifier_metrics(), **change}))
    with pytest.raises(ResultsError) as exc:
        read_metrics(path)
    assert str(path) in str(exc.value) and f": {field}: " in str(exc.value)
    with pytest.raises(ResultsError, match=f"{path}.*{field}"):
        load_run(path.parent)  # the comparison's reader goes through the model too


def test_newer_versions_and_non_objects_are_refused(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({**_classifier_metrics(), "schema_version": 99}))
    with pytest.raises(ResultsError, match=f"{path}: schema_version 99 is newer"):
        read_metrics(path)
    path.write_text("[1, 2]")
    with pytest.raises(ResultsError, match=f"{path}: top level must be a JSON object"):
        read_metrics(path)


def test_a_run_without_test_metrics_cannot_be_compared(tmp_path):
    write_metrics(tmp_path / "metrics.json", MetricsFile(kind="classifier", task="multilabel"))
    with pytest.raises(CompareError, match="has no 'test' metrics"):
        load_run(tmp_path)


def _comparison() -> dict:
    agg = {"mean": 0.5, "std": None, "n": 1, "values": [0.5]}
    variant = {"name": "multilabel-masked", "kind": "classifier", "task": "multilabel", "inset_mode": "masked",
               "model": "resnet18", "n_seeds": 1, "seeds": [0], "run_dirs": ["runs/a"], "split_sha256": ["s"],
               "test": {"macro_ap": agg}, "selection": ["last"], "per_class_ap": {"polyp": agg},
               "hard_pairs": {"a vs b": {"a": "a", "b": "b", "n_runs": 1, "a_as_b": agg, "b_as_a": agg,
                                         "rate": agg, "matrix_sum": [[1, 0], [0, 1]]}}}
    return {"format_version": 2, "metrics": ["macro_ap"], "detector_metrics": [], "std": "sample std",
            "datasets": ["synthetic"], "split_sha256": ["s"], "same_split": True, "variants": {variant["name"]: variant},
            "paired": {"x-vs-y": {"macro_ap": {"diff": 0.1, "ci95": [0.0, 0.2], "star": False}}}, "design": {}}


def test_comparison_round_trip_old_file_and_table(tmp_path):
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(_comparison()))  # written before schema_version: format_version names it
    old = read_comparison(path)
    assert old.schema_version == 2 and old.variants["multilabel-masked"].test["macro_ap"].mean == 0.5
    assert old.variants["multilabel-masked"].hard_pairs["a vs b"].rate.n == 1
    assert "| multilabel-masked | 1 | 0.500 |" in metrics_table(old)
    write_result(tmp_path / "again.json", old)
    again = json.loads((tmp_path / "again.json").read_text())
    assert again == {"schema_version": 2, **_comparison()}
    assert read_comparison(tmp_path / "again.json") == old


def test_a_malformed_comparison_is_refused_naming_file_and_field(tmp_path):
    raw = _comparison()
    raw["variants"]["multilabel-masked"]["test"]["macro_ap"]["mean"] = "half"
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match=f"{path}: variants.multilabel-masked.test.macro_ap.mean: "):
        read_comparison(path)


def test_prediction_records_round_trip_and_a_bad_line_is_named(tmp_path):
    entry = {"image": "a.jpg", "width": 8, "height": 6, "inset": {"state": "green", "box_xywh_px": None},
             "labels": {"polyp": 0.9}, "predicted_labels": ["polyp"], "source_class": None,
             "boxes": [{"class": "polyp", "score": 0.7, "xywh_px": [1.0, 1.0, 2.0, 2.0]}]}
    failed = {"image": "b.jpg", "error": "not an image"}
    path = tmp_path / "p.jsonl"
    path.write_text(prediction_line(entry) + prediction_line(failed))
    first, second = read_predictions(path)
    assert first.schema_version == 1 and first.boxes[0].class_ == "polyp" and first.labels["polyp"] == 0.9
    assert second.error == "not an image" and second.boxes == []
    assert json.loads(path.read_text().splitlines()[0]) == {"schema_version": 1, **entry}
    path.write_text(prediction_line(entry) + json.dumps({**entry, "labels": {"polyp": "high"}}) + "\n")
    with pytest.raises(ResultsError, match=f"{path}, line 2: labels.polyp: "):
        read_predictions(path)
