"""The library path for real: 2-fold training of the tiny classifier on synthetic frames with
injected class swaps, cleanlab ranking, and the CLI on the same fold runs (``--runs``).

Slow: two training runs take ~45 CPU-seconds (minutes on a busy machine). The default suite
covers the ranking, noise and folds without training (test_review_suspects.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kvasir_ml.cli import main
from kvasir_ml.data.coco import load_canonical
from kvasir_ml.review.noise import inject_label_swaps
from kvasir_ml.review.oof import run_kfold
from kvasir_ml.review.suspects import rank_suspects

pytestmark = pytest.mark.slow

FAST = ["optim.epochs=8", "tracking.mode=disabled", "data.image_size_px=32"]
# Pairs a few epochs on 32 frames can tell apart (upper vs lower GI): this test checks the path;
# the hard pairs (esophagitis <-> normal-z-line, ...) are the benchmark's job.
PAIRS = [("normal-pylorus", "normal-cecum"), ("normal-z-line", "polyps")]


@pytest.fixture(scope="module")
def kfold(synth_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review")
    noisy, swaps = inject_label_swaps(load_canonical(synth_dir / "annotations.coco.json"), 0.1, 0, PAIRS)
    canonical = tmp / "noisy.coco.json"
    noisy.save(canonical, keep_backup=False)
    oof = run_kfold(canonical, tmp / "work", k=2, root=synth_dir, classifier_overrides=FAST, detector_config=None)
    return canonical, swaps, oof, tmp


def test_kfold_scores_every_image_out_of_fold_and_ranks_swaps_above_chance(kfold):
    canonical, swaps, oof, tmp = kfold
    ds = load_canonical(canonical)
    assert oof.file_names == [img["file_name"] for img in ds.images] and oof.detections is None
    assert oof.label_scores.shape == (64, len(oof.label_names))
    for i in range(2):  # each fold's model scored exactly its own test images, never its train images
        split = json.loads((tmp / "work" / "folds" / f"fold{i}.split.json").read_text())
        run_split = json.loads((tmp / "work" / "classifier" / f"fold{i}" / "split.json").read_text())
        assert run_split["sha256"] == split["sha256"]
    suspects = rank_suspects(ds, oof)
    assert len(suspects) == 64 and all(s["kind"] == "label" for s in suspects)
    ranks = [i for i, s in enumerate(suspects) if s["file_name"] in {r["file_name"] for r in swaps}]
    assert len(swaps) == 6 and len(ranks) == 6
    # Chance puts the swapped frames at mean rank 31.5 of 0..63; the models must do better.
    assert np.mean(ranks) < 31.5, ranks


def test_cli_ranks_finished_fold_runs(kfold, synth_dir, capsys):
    canonical, swaps, oof, tmp = kfold
    out = tmp / "suspects.json"
    runs = [str(tmp / "work" / "classifier" / f"fold{i}") for i in range(2)]
    assert main(["review", "suspects", str(canonical), "--out", str(out), "--runs", *runs,
                 "--root", str(synth_dir)]) == 0  # the class view reads the images
    written = json.loads(out.read_text())
    assert [s["score"] for s in written] == sorted((s["score"] for s in written), reverse=True)
    assert {"file_name", "given", "suggested", "score", "kind"} <= set(written[0])
    assert written == rank_suspects(load_canonical(canonical), oof)  # the same ranking as the library call
    assert "most likely error first" in capsys.readouterr().out
    missing = runs[:1]  # one fold's run cannot cover the other fold's images
    assert main(["review", "suspects", str(canonical), "--out", str(tmp / "x.json"), "--runs", *missing]) == 2
    assert "no classifier run's test split" in capsys.readouterr().err
