"""Agreement measures of the verification workflow (pure functions, no server)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from kvasir_ml.evaluation.agreement import box_agreement, consensus_boxes, label_agreement, majority, match_boxes


def _alpha_by_hand(answers: dict[str, dict[str, bool]]) -> float:
    """Nominal Krippendorff's alpha from its coincidence matrix (Krippendorff 2011, section C)."""
    o = np.zeros((2, 2))
    for unit in answers.values():
        values = [int(v) for v in unit.values()]
        if len(values) < 2:
            continue
        for i, j in itertools.permutations(range(len(values)), 2):
            o[values[i], values[j]] += 1 / (len(values) - 1)
    n_c, n = o.sum(axis=1), o.sum()
    observed = o[0, 1] + o[1, 0]
    expected = 2 * n_c[0] * n_c[1] / (n - 1)
    return 1 - observed / expected


def test_two_annotators_give_cohens_kappa():
    a = [True, True, False, False, True, False, False, True]
    b = [True, False, False, False, True, False, True, True]
    answers = {f"i{k}": {"ann-1": x, "ann-2": y} for k, (x, y) in enumerate(zip(a, b))}
    answers["lonely"] = {"ann-1": True}  # one answer: not part of any pair
    got = label_agreement(answers)
    assert got["method"] == "cohen_kappa" and got["n_images"] == 8 and got["n_annotators"] == 2
    assert got["value"] == pytest.approx(cohen_kappa_score(a, b))
    assert got["raw_agreement"] == pytest.approx(6 / 8)


def test_three_annotators_with_gaps_give_krippendorffs_alpha():
    answers = {"i1": {"a": True, "b": True, "c": True}, "i2": {"a": False, "b": False, "c": True},
               "i3": {"a": True, "b": False}, "i4": {"b": False, "c": False}, "i5": {"a": True, "c": True},
               "i6": {"a": False, "b": False, "c": False}}
    got = label_agreement(answers)
    assert got["method"] == "krippendorff_alpha" and got["n_annotators"] == 3 and got["n_images"] == 6
    assert got["value"] == pytest.approx(_alpha_by_hand(answers))
    assert 0 < got["value"] < 1


def test_no_variation_is_undefined_not_perfect():
    got = label_agreement({f"i{k}": {"a": False, "b": False} for k in range(5)})
    assert got["value"] is None and got["raw_agreement"] == 1.0 and got["n_yes"] == 0


@pytest.mark.parametrize("votes,expected", [([True, True, False], True), ([True, False], None),
                                            ([False, False, True], False), ([], None)])
def test_majority(votes, expected):
    assert majority(votes) is expected


def test_boxes_match_one_to_one_by_iou():
    a = [(0, 0, 10, 10), (20, 20, 10, 10)]
    b = [(21, 21, 10, 10), (50, 50, 5, 5)]
    assert [(i, j) for i, j, _ in match_boxes(a, b, 0.5)] == [(1, 0)]
    got = box_agreement({"img": {"x": a, "y": b}, "empty": {"x": [], "y": []}})
    assert (got["n_boxes"], got["n_matched"], got["n_pairs"]) == (4, 1, 2)
    assert got["f1"] == pytest.approx(0.5)


def test_consensus_boxes_keep_majority_and_count_ties():
    same = [(10, 10, 20, 20), (11, 10, 20, 20), (10, 11, 20, 20)]
    kept, ties = consensus_boxes({"a": [same[0]], "b": [same[1]], "c": [same[2], (60, 60, 5, 5)]})
    assert ties == 0 and len(kept) == 1  # the lone small box: a majority "no box"
    assert kept[0] == pytest.approx(np.mean(same, axis=0))
    kept, ties = consensus_boxes({"a": [(0, 0, 10, 10)], "b": []})
    assert (kept, ties) == ([], 1)
