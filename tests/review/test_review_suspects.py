"""Label-error ranking on hand-made out-of-fold predictions (no training: fast).

The predictions say what the clean labels are; the noise module corrupts the given labels;
cleanlab's ranking must put the corrupted images and boxes first.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.review.bench import score_box_ranking, score_label_ranking
from kvasir_ml.review.noise import inject_box_noise, inject_label_swaps
from kvasir_ml.review.oof import OofError, OofPredictions, collect_oof, make_folds
from kvasir_ml.review.suspects import KINDS, rank_suspects
from kvasir_ml.taxonomy import load_taxonomy

CLASSES = ["esophagitis", "normal-z-line", "dyed-lifted-polyps", "dyed-resection-margins", "polyps", "normal-cecum"]
REQUIRED = {"file_name", "given", "suggested", "score", "kind"}


def _dataset(n: int = 60) -> CanonicalDataset:
    tax = load_taxonomy()
    ds = CanonicalDataset.new("synthetic", taxonomy=tax)
    for i in range(n):
        cls = CLASSES[i % len(CLASSES)]
        iid = ds.add_image(f"images/f{i:03d}.jpg", 200, 160, tax.labels_for("synthetic", cls), "synthetic", cls,
                           inset="none", content_sha256=f"{i:064x}")
        if cls in ("polyps", "dyed-lifted-polyps"):
            ds.add_box(iid, "polyp", [40 + i % 7, 30 + i % 5, 60, 50])
        elif cls == "dyed-resection-margins":
            ds.add_box(iid, "resection-margin", [70, 60, 80, 40])
    return ds


def _clean_oof(ds: CanonicalDataset, rng: np.random.Generator) -> OofPredictions:
    """What a good model would predict for the clean labels: high on given labels, low elsewhere."""
    tax = load_taxonomy()
    names = tax.label_names
    y = np.array([[lab in img["labels"] for lab in names] for img in ds.images], dtype=float)
    scores = np.clip(np.where(y > 0, rng.uniform(0.7, 0.97, y.shape), rng.uniform(0.01, 0.25, y.shape)), 0, 1)
    by_id, dets = ds.image_by_id, {}
    for img in ds.images:
        dets[img["file_name"]] = []
    for ann in ds.annotations:
        x, yy, w, h = ann["bbox"]
        dets[by_id[ann["image_id"]]["file_name"]].append(
            {"class": ds.category_name(ann["category_id"]), "score": float(rng.uniform(0.96, 0.99)),
             "xywh_px": [x + rng.uniform(-1, 1), yy + rng.uniform(-1, 1), w, h]})
    return OofPredictions([img["file_name"] for img in ds.images], names, scores, dets)


def test_swapped_labels_and_edited_boxes_rank_first():
    clean = _dataset()
    oof = _clean_oof(clean, np.random.default_rng(0))
    noisy, swaps = inject_label_swaps(clean, 0.1, seed=1, pairs=[CLASSES[:2], CLASSES[2:4]])
    noisy, edits = inject_box_noise(noisy, 0.2, seed=2, exclude=[r["file_name"] for r in swaps])
    assert len(swaps) == 6 and {e["noise"] for e in edits} == {"shift", "drop", "add"}
    suspects = rank_suspects(noisy, oof)

    assert suspects and all(REQUIRED <= set(s) and s["kind"] in KINDS for s in suspects)
    scores = [s["score"] for s in suspects]
    assert scores == sorted(scores, reverse=True)  # most likely error first
    labels = score_label_ranking(suspects, swaps)
    assert labels["n_injected"] == 6 and labels["precision_at_n"] == 1.0
    top_label = next(s for s in suspects if s["kind"] == "label")
    swap = next(r for r in swaps if r["file_name"] == top_label["file_name"])
    assert set(top_label["given"]) == set(swap["given"]) and set(top_label["suggested"]) == set(swap["true"])
    boxes = score_box_ranking(suspects, edits)
    assert boxes["n_injected"] == len(edits) and boxes["recall_at_2n"] == 1.0
    kinds = {s["kind"] for s in suspects[:10] if s["kind"] != "label"}
    assert {"box-missing", "box-spurious"} <= kinds or "box-placement" in kinds


def test_label_swaps_only_touch_confusable_classes():
    ds = _dataset(60)
    noisy, swaps = inject_label_swaps(ds, 0.1, seed=3, pairs=[("esophagitis", "normal-z-line")])
    assert len(swaps) == 6
    tax = load_taxonomy()
    by_file = noisy.image_by_file
    for r in swaps:
        assert {r["from"], r["to"]} == {"esophagitis", "normal-z-line"}
        assert by_file[r["file_name"]]["labels"] == tax.labels_for("synthetic", r["to"])
    assert ds.image_by_file[swaps[0]["file_name"]]["source_class"] == swaps[0]["from"]  # input untouched


def test_folds_partition_the_images_and_keep_duplicates_together():
    ds = _dataset(30)
    ds.images[1]["content_sha256"] = ds.images[0]["content_sha256"]  # an exact duplicate
    folds = make_folds(ds, 3, seed=0)
    tests = [set(f.splits["test"]) for f in folds]
    assert sum(map(len, tests)) == 30 and set.union(*tests) == {img["file_name"] for img in ds.images}
    for f in folds:
        train, val, test = (set(f.splits[k]) for k in ("train", "val", "test"))
        assert val and not (train & test) and not (val & test) and len(train | val | test) == 30
    pair = {ds.images[0]["file_name"], ds.images[1]["file_name"]}
    assert any(pair <= t for t in tests)
    with pytest.raises(OofError, match="2k distinct"):
        make_folds(ds.subset([img["file_name"] for img in ds.images[:4]]), 3)


def test_runs_that_miss_images_are_refused(tmp_path):
    with pytest.raises(OofError, match="no metrics.json"):
        collect_oof(_dataset(12), [tmp_path])


def _fake_classifier_run(folder, file_names, label_names, scores):
    """The two files a finished classifier run leaves that --runs reads (metrics.json's kind and
    predictions_test.npz as train.report.save_predictions writes it)."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"kind": "classifier"}))
    np.savez_compressed(folder / "predictions_test.npz", file_names=np.array(file_names),
                        label_names=np.array(label_names), label_scores=scores)
    return str(folder)


def test_cli_ranks_runs_that_cover_every_image_and_refuses_gaps(tmp_path, capsys):
    from kvasir_ml.cli import main

    clean = _dataset(24)
    oof = _clean_oof(clean, np.random.default_rng(1))
    noisy, swaps = inject_label_swaps(clean, 0.1, seed=4, pairs=[CLASSES[:2], CLASSES[2:4]])
    canonical = tmp_path / "noisy.coco.json"
    noisy.save(canonical, keep_backup=False)
    half = len(oof.file_names) // 2
    runs = [_fake_classifier_run(tmp_path / f"fold{i}", oof.file_names[sl], oof.label_names, oof.label_scores[sl])
            for i, sl in enumerate((slice(0, half), slice(half, None)))]
    out = tmp_path / "suspects.json"
    assert main(["review", "suspects", str(canonical), "--out", str(out), "--runs", *runs, "--no-class-view"]) == 0
    written = json.loads(out.read_text())
    assert len(written) == 24 and all(REQUIRED <= set(s) for s in written)
    assert [s["score"] for s in written] == sorted((s["score"] for s in written), reverse=True)
    assert {s["file_name"] for s in written[:len(swaps)]} == {r["file_name"] for r in swaps}
    assert "most likely error first" in capsys.readouterr().out
    assert main(["review", "suspects", str(canonical), "--out", str(tmp_path / "x.json"), "--runs", runs[0]]) == 2
    assert "12 images are in no classifier run's test split" in capsys.readouterr().err


def test_class_view_ranks_swapped_source_classes_first_and_suggests_the_true_labels():
    clean = _dataset()
    rng = np.random.default_rng(4)
    oof = _clean_oof(clean, rng)
    oof.detections = None
    classes = sorted(set(CLASSES))
    true = np.array([classes.index(img["source_class"]) for img in clean.images])
    probs = rng.uniform(0.0, 0.1, (len(true), len(classes)))
    probs[np.arange(len(true)), true] = rng.uniform(0.6, 0.9, len(true))
    oof.class_names, oof.class_scores = classes, probs / probs.sum(1, keepdims=True)
    oof.label_scores = np.full_like(oof.label_scores, 0.5)  # a multi-label view that learned nothing
    noisy, swaps = inject_label_swaps(clean, 0.1, seed=1, pairs=[CLASSES[:2], CLASSES[2:4]])

    suspects = rank_suspects(noisy, oof)
    assert all(REQUIRED <= set(s) and s["kind"] == "label" for s in suspects) and len(suspects) == len(true)
    assert score_label_ranking(suspects, swaps)["precision_at_n"] == 1.0
    for s in suspects[:len(swaps)]:
        swap = next(r for r in swaps if r["file_name"] == s["file_name"])
        assert (s["given_class"], s["suggested_class"]) == (swap["to"], swap["from"])
        assert set(s["suggested"]) == set(swap["true"]) and "multilabel_score" in s


def test_class_view_scores_images_out_of_fold(tmp_path):
    from PIL import Image

    from kvasir_ml.review.features import oof_class_scores

    tax, rng = load_taxonomy(), np.random.default_rng(5)
    ds = CanonicalDataset.new("synthetic", taxonomy=tax)
    (tmp_path / "images").mkdir()
    for i in range(30):  # reddish vs bluish frames, with noise: separable by colour alone
        cls = ("esophagitis", "normal-z-line")[i % 2]
        base = np.array([180, 60, 50] if i % 2 == 0 else [60, 80, 170])
        pixels = np.clip(base + rng.normal(0, 25, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"images/f{i:02d}.png")
        ds.add_image(f"images/f{i:02d}.png", 48, 48, tax.labels_for("synthetic", cls), "synthetic", cls,
                     inset="none", content_sha256=f"{i:064x}")
    names = [img["file_name"] for img in ds.images]
    classes, probs = oof_class_scores(ds, tmp_path, names, k=3)
    assert classes == ["esophagitis", "normal-z-line"] and probs.shape == (30, 2)
    assert np.allclose(probs.sum(1), 1.0)
    given = np.array([classes.index(img["source_class"]) for img in ds.images])
    assert (probs.argmax(1) == given).mean() >= 0.9
    ds.images[0]["source_class"] = None  # the class view needs every image's class
    assert oof_class_scores(ds, tmp_path, names, k=3) is None
