"""The comparison says which ground truth its test numbers used, and on how many images."""

from __future__ import annotations

from kvasir_ml.experiment.compare import RunRecord, compare_runs
from kvasir_ml.experiment.ground_truth import ground_truth_sentence, ground_truth_summary


def _record(task: str, seed: int, ground_truth: dict | None) -> RunRecord:
    test = {"macro_ap": 0.5, "per_class": {"polyp": {"ap": 0.5, "support": 2}}, "n_images": 4}
    metrics = {"kind": "classifier", "task": task, "inset_mode": "masked", "seed": seed, "split_sha256": "s",
               "n_images": {"train": 10, "val": 5, "test": 9}, "test": test}
    if ground_truth is not None:
        metrics["ground_truth"] = ground_truth
    return RunRecord(f"{task}-{seed}", metrics)


def test_comparison_records_verified_ground_truth():
    gt = {"kind": "verified", "n_test_images": 4, "n_test_left_out": 5}
    comparison = compare_runs([_record("multilabel", 0, gt), _record("singlelabel", 0, gt)])
    assert comparison["ground_truth"] == {"kinds": ["verified"], "n_test_images": [4], "n_test_left_out": [5],
                                          "same": True}
    sentence = ground_truth_sentence(comparison["ground_truth"])
    assert "verified labels" in sentence and "on 4 test images" in sentence and "5 unverified" in sentence


def test_runs_before_the_switch_count_as_folder_and_a_mix_is_flagged():
    old = _record("multilabel", 0, None)
    assert ground_truth_summary([old.metrics])["kinds"] == ["folder"]
    assert "folder labels" in ground_truth_sentence(ground_truth_summary([old.metrics])) and "9 test" in \
        ground_truth_sentence(ground_truth_summary([old.metrics]))
    mixed = ground_truth_summary([old.metrics, _record("singlelabel", 0, {"kind": "verified", "n_test_images": 4}).metrics])
    assert not mixed["same"] and "MIXED" in ground_truth_sentence(mixed)
