"""Splits: determinism, stratification, grouping of duplicates, hashes, official folds."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from kvasir_ml.cli import main as cli_main
from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.splits import (
    SPLIT_NAMES,
    SplitError,
    kvasirseg_hyperkvasir_groups,
    load_split,
    make_splits,
    split_from_hyperkvasir_folds,
)
from kvasir_ml.taxonomy import load_taxonomy


def _hyperkvasir_like(shared_data: Path, every: int = 3) -> CanonicalDataset:
    """Image entries for every ``every``-th real HyperKvasir CSV row (no pixels needed)."""
    tx = load_taxonomy()
    ds = CanonicalDataset.new("hyperkvasir")
    rows = list(csv.DictReader(open(shared_data / "hyperkvasir" / "image-labels.csv", encoding="utf-8")))
    for i, row in enumerate(rows):
        finding = row["Finding"]
        if i % every and finding not in ("hemorrhoids", "ileum"):  # keep the rarest classes whole
            continue
        ds.add_image(f"labeled-images/{finding}/{row['Video file']}.jpg", 64, 48, tx.labels_for("hyperkvasir", finding),
                     "hyperkvasir", tx.source("hyperkvasir").canonical_class(finding), content_sha256=row["Video file"])
    return ds


@pytest.fixture(scope="module")
def hk(shared_data) -> CanonicalDataset:
    return _hyperkvasir_like(shared_data)


def test_deterministic_by_seed_and_hash_stable(hk, tmp_path):
    a, b, c = make_splits(hk, seed=0), make_splits(hk, seed=0), make_splits(hk, seed=1)
    assert a.splits == b.splits and a.sha256 == b.sha256
    assert a.sha256 != c.sha256 and a.splits["test"] != c.splits["test"]
    # file order does not matter
    shuffled = CanonicalDataset(hk.info, hk.categories, list(reversed(hk.images)), [])
    assert make_splits(shuffled, seed=0).sha256 == a.sha256
    path = tmp_path / "split.json"
    a.save(path)
    loaded = load_split(path)
    assert loaded.splits == a.splits and loaded.sha256 == a.sha256 and loaded.seed == 0
    assert json.loads(path.read_text())["sha256"] == a.sha256
    all_files = sorted(f for name in SPLIT_NAMES for f in a.splits[name])
    assert all_files == sorted(img["file_name"] for img in hk.images)  # a partition
    n = len(all_files)
    for name, frac in zip(SPLIT_NAMES, (0.7, 0.15, 0.15)):
        assert abs(len(a.splits[name]) - frac * n) <= 0.02 * n


def test_every_label_and_class_with_three_images_in_every_split(hk):
    for seed in (0, 1, 2):
        split = make_splits(hk, seed=seed)
        by_file = hk.image_by_file
        totals = Counter(c for img in hk.images for c in img["labels"] + [img["source_class"]])
        for name in SPLIT_NAMES:
            present = Counter(c for f in split.splits[name] for c in by_file[f]["labels"] + [by_file[f]["source_class"]])
            missing = [c for c, n in totals.items() if n >= 3 and present[c] == 0]
            assert not missing, (seed, name, missing)


def test_duplicates_and_groups_never_straddle(hk, shared_data):
    ds = CanonicalDataset(hk.info, hk.categories, [dict(img) for img in hk.images], [])
    # every 10th image gets an exact duplicate (same content hash, another file name)
    for img in list(ds.images[::10]):
        ds.add_image("copies/" + img["file_name"], 64, 48, img["labels"], "kvasir-v2", img["source_class"],
                     content_sha256=img["content_sha256"])
    # Kvasir-SEG images and their HyperKvasir twins, tied by the real uuid map
    mapping = list(csv.DictReader(open(shared_data / "hyperkvasir" / "kvasirseg_to_hyperkvasir_uuid.csv")))[:60]
    for row in mapping:
        ds.add_image(f"kvasir-seg/images/{row['kvasir_seg_id']}.jpg", 64, 48, ["polyp"], "kvasir-seg", "polyps",
                     content_sha256="kseg-" + row["kvasir_seg_id"])
        ds.add_image(f"segmented-images/images/{row['hyperkvasir_segmented_uuid']}.jpg", 64, 48, ["polyp"],
                     "hyperkvasir", "polyps", content_sha256="hk-" + row["hyperkvasir_segmented_uuid"])
    groups = kvasirseg_hyperkvasir_groups(ds, shared_data / "hyperkvasir" / "kvasirseg_to_hyperkvasir_uuid.csv")
    assert len(set(groups.values())) >= 60
    split = make_splits(ds, seed=3, groups=groups)
    where = {f: name for name in SPLIT_NAMES for f in split.splits[name]}
    by_hash: dict[str, set[str]] = {}
    for img in ds.images:
        by_hash.setdefault(img["content_sha256"], set()).add(where[img["file_name"]])
    assert all(len(s) == 1 for s in by_hash.values())
    by_group: dict[str, set[str]] = {}
    for fn, key in groups.items():
        by_group.setdefault(key, set()).add(where[fn])
    assert all(len(s) == 1 for s in by_group.values())
    assert split.info["n_multi_image_groups"] >= 60


def test_small_dataset_and_bad_arguments(tmp_path):
    tx = load_taxonomy()
    ds = CanonicalDataset.new("synthetic")
    for i, cls in enumerate(tx.source("synthetic").classes * 3):
        ds.add_image(f"{cls}/{i}.jpg", 10, 10, tx.labels_for("synthetic", cls), "synthetic", cls, content_sha256=str(i))
    split = make_splits(ds, seed=0)
    for name in SPLIT_NAMES:  # 3 images per class -> one per split
        assert Counter(ds.image_by_file[f]["source_class"] for f in split.splits[name]) == Counter(tx.source("synthetic").classes)
    with pytest.raises(SplitError, match="summing to 1"):
        make_splits(ds, seed=0, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(SplitError, match="empty"):
        make_splits(CanonicalDataset.new("x"), seed=0)
    path = tmp_path / "s.json"
    split.save(path)
    raw = json.loads(path.read_text())
    raw["splits"]["test"].append("sneaked-in.jpg")
    path.write_text(json.dumps(raw))
    with pytest.raises(SplitError, match="does not match its content"):
        load_split(path)


def test_official_hyperkvasir_folds(hk, shared_data):
    folds = shared_data / "hyperkvasir" / "2_fold_split.csv"
    split = split_from_hyperkvasir_folds(hk, folds, val_fold=1)
    official = {row[0]: int(row[2]) for row in csv.reader(open(folds), delimiter=";") if row[2].isdigit()}
    assert split.splits["test"] == []
    for name, fold in (("train", 0), ("val", 1)):
        assert split.splits[name] and all(official[Path(f).name] == fold for f in split.splits[name])
    assert split.info["n_class_mismatches"] == 0  # the fold file's aliases resolve via the taxonomy
    five = split_from_hyperkvasir_folds(hk, shared_data / "hyperkvasir" / "5_fold_split.csv", val_fold=3, test_fold=4)
    assert all(len(five.splits[n]) > 0 for n in SPLIT_NAMES)
    extra = CanonicalDataset(hk.info, hk.categories, list(hk.images), [])
    extra.add_image("other/x.jpg", 1, 1, [], "kvasir-v2", "polyps")
    with pytest.raises(SplitError, match="1 images of the dataset are not listed"):
        split_from_hyperkvasir_folds(extra, folds, val_fold=1)
    assert "other/x.jpg" in split_from_hyperkvasir_folds(extra, folds, val_fold=1, unlisted="train").splits["train"]


def test_cli_split(hk, tmp_path, capsys):
    path = tmp_path / "hk.json"
    hk.save(path)
    out = tmp_path / "split.json"
    assert cli_main(["data", "split", str(path), "--out", str(out), "--seed", "4",
                     "--near-duplicate-max-distance", "-1"]) == 0  # metadata only: no pixels to hash
    text = capsys.readouterr().out
    split = load_split(out)
    assert split.sha256 in text and "esophagitis" in text and split.seed == 4
    assert split.sha256 == make_splits(hk, seed=4).sha256
