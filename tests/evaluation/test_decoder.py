"""The class decoder fitted on val recovers known class mixtures; the top-1 ceiling.

Val data are simulated where the true class posterior at each label-score vector is known:
"pure" frames of each Kvasir v2 class (scores near its label set) and two kinds of mixed
frames whose calibrated label scores are the mixture of the classes' label sets
(P(label) = sum of the class shares that contain it): 70/30 dyed-lifted-polyps /
dyed-resection-margins, and 0.4/0.3/0.3 dyed-lifted-polyps / polyps / ulcerative-colitis.
Each mixed frame's class is drawn from its mixture, so the best any decoder can say at
that score vector is the mixture itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kvasir_ml.evaluation.classification import label_scores_to_class_proba
from kvasir_ml.evaluation.decoder import ClassDecoder, fit_decoder, top1_ceiling
from kvasir_ml.taxonomy import load_taxonomy

N_PURE = 200  # frames per class
N_MIX = 1500  # frames per mixture: binomial s.e. of a 0.4 share is sqrt(.24/1500) = 0.013
MIX_70_30 = {"dyed-lifted-polyps": 0.7, "dyed-resection-margins": 0.3}
MIX_40_30_30 = {"dyed-lifted-polyps": 0.4, "polyps": 0.3, "ulcerative-colitis": 0.3}


@pytest.fixture(scope="module")
def kvasir_v2():
    tax = load_taxonomy()
    return tax.label_names, list(tax.source("kvasir-v2").classes), tax.class_label_matrix("kvasir-v2").astype(float)


def _mixture(shares: dict[str, float], classes: list[str]) -> np.ndarray:
    pi = np.zeros(len(classes))
    for name, share in shares.items():
        pi[classes.index(name)] = share
    return pi


def _scores_of(pi: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Calibrated label scores of a frame whose class posterior is ``pi``."""
    return np.clip(pi @ matrix, 0.02, 0.98)


def _simulated_val(labels, classes, matrix, seed: int = 0):
    rng = np.random.default_rng(seed)
    pis = [np.eye(len(classes))[k] for k in range(len(classes)) for _ in range(N_PURE)]
    pis += [_mixture(MIX_70_30, classes)] * N_MIX + [_mixture(MIX_40_30_30, classes)] * N_MIX
    pis = np.array(pis)
    scores = np.clip(np.array([_scores_of(pi, matrix) for pi in pis]) + rng.normal(0, 0.02, (len(pis), len(labels))),
                     0.005, 0.995)
    y_class = np.array([rng.choice(len(classes), p=pi) for pi in pis])
    return scores, y_class


@pytest.fixture(scope="module")
def fitted(kvasir_v2):
    labels, classes, matrix = kvasir_v2
    scores, y_class = _simulated_val(labels, classes, matrix)
    return fit_decoder(scores, y_class, matrix, labels, classes, class_counts=np.bincount(y_class, minlength=8))


def test_likelihood_decoding_is_biased_on_the_issue_mixtures(kvasir_v2):
    """What the fitted decoder replaces (the numbers the issue reports)."""
    labels, classes, matrix = kvasir_v2
    p = label_scores_to_class_proba(_scores_of(_mixture(MIX_70_30, classes), matrix)[None], matrix)[0]
    assert p[classes.index("dyed-lifted-polyps")] > 0.9
    p = label_scores_to_class_proba(_scores_of(_mixture(MIX_40_30_30, classes), matrix)[None], matrix)[0]
    assert classes[int(p.argmax())] == "polyps"


def test_decoder_recovers_the_70_30_mixture(kvasir_v2, fitted):
    labels, classes, matrix = kvasir_v2
    p = fitted.class_proba(_scores_of(_mixture(MIX_70_30, classes), matrix)[None], labels)[0]
    # 0.05 = ~3.5 binomial s.e. at n = 1500, plus the logistic model's own approximation
    assert p[classes.index("dyed-lifted-polyps")] == pytest.approx(0.7, abs=0.05)
    assert p[classes.index("dyed-resection-margins")] == pytest.approx(0.3, abs=0.05)


def test_decoder_ranks_the_0_4_class_first(kvasir_v2, fitted):
    labels, classes, matrix = kvasir_v2
    p = fitted.class_proba(_scores_of(_mixture(MIX_40_30_30, classes), matrix)[None], labels)[0]
    assert classes[int(p.argmax())] == "dyed-lifted-polyps"
    for name, share in MIX_40_30_30.items():
        assert p[classes.index(name)] == pytest.approx(share, abs=0.06), name


def test_decoder_keeps_pure_frames_and_round_trips_a_safe_checkpoint(kvasir_v2, fitted, tmp_path):
    labels, classes, matrix = kvasir_v2
    pure = np.clip(matrix, 0.02, 0.98)
    assert np.array_equal(fitted.class_proba(pure, labels).argmax(1), np.arange(len(classes)))
    torch.save({"decoder": fitted.to_state()}, tmp_path / "d.pt")
    again = ClassDecoder.from_state(torch.load(tmp_path / "d.pt", weights_only=True)["decoder"])
    assert np.allclose(again.class_proba(pure, labels), fitted.class_proba(pure, labels))
    # label columns are found by name: another label order gives the same distribution
    order = np.arange(len(labels))[::-1]
    assert np.allclose(again.class_proba(pure[:, order], [labels[i] for i in order]), fitted.class_proba(pure, labels))


def test_a_class_absent_from_val_is_still_decodable(kvasir_v2):
    labels, classes, matrix = kvasir_v2
    scores, y_class = _simulated_val(labels, classes, matrix, seed=1)
    gone = classes.index("normal-pylorus")
    keep = y_class != gone
    dec = fit_decoder(scores[keep], y_class[keep], matrix, labels, classes)
    assert dec.class_proba(np.clip(matrix[gone:gone + 1], 0.02, 0.98), labels).argmax() == gone


def test_top1_ceiling_from_identical_label_sets():
    tax = load_taxonomy()
    classes = list(tax.source("hyperkvasir").classes)
    matrix = tax.class_label_matrix("hyperkvasir")
    counts = {"esophagitis-a": 30, "esophagitis-b-d": 10, "barretts": 4, "barretts-short-segment": 6, "cecum": 50}
    y = np.concatenate([[classes.index(n)] * c for n, c in counts.items()] + [[-1] * 7])
    out = top1_ceiling(matrix, classes, y)
    assert out["top1_ceiling_multilabel"] == pytest.approx((30 + 6 + 50) / 100)
    groups = {tuple(g["classes"]): g for g in out["top1_ceiling_groups"]}
    assert groups[("esophagitis-a", "esophagitis-b-d")]["best"] == 30
    assert ("cecum",) not in groups and any("ulcerative-colitis-grade-1" in g for g in groups)
    v2 = top1_ceiling(tax.class_label_matrix("kvasir-v2"), list(tax.source("kvasir-v2").classes), [0, 1, 2])
    assert v2["top1_ceiling_multilabel"] == 1.0 and v2["top1_ceiling_groups"] == []
