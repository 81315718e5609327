"""kvasir_ml.data.resolve: one way for runs and experiments to find their data and split."""

from __future__ import annotations

import pytest

from kvasir_ml.config import DatasetConfig
from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.resolve import DatasetError, dataset_name, resolve_dataset, resolve_split
from kvasir_ml.data.splits import load_split, make_splits


def test_given_canonical_and_missing_file(synth_dir, tmp_path):
    cfg = DatasetConfig(canonical=str(synth_dir / "annotations.coco.json"))
    canonical, root = resolve_dataset(cfg, tmp_path)
    assert canonical == synth_dir / "annotations.coco.json" and root == synth_dir
    assert dataset_name(DatasetConfig(canonical="synthetic"), load_canonical(canonical), canonical) == "synthetic"
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_dataset(DatasetConfig(canonical=str(tmp_path / "nope.json")), tmp_path)


def test_split_is_made_once_then_frozen(synth_dir, tmp_path):
    ds = load_canonical(synth_dir / "annotations.coco.json")
    cfg = DatasetConfig(fractions=(0.6, 0.2, 0.2))
    first = resolve_split(ds, cfg, tmp_path, root=synth_dir)
    assert load_split(tmp_path / "split.json").sha256 == first.sha256
    # a frozen split wins over new seeds (resume)
    assert resolve_split(ds, cfg.model_copy(update={"split_seed": 7}), tmp_path).sha256 == first.sha256
    other = make_splits(ds, seed=7, fractions=(0.6, 0.2, 0.2))
    other.save(tmp_path / "other.json")
    with pytest.raises(DatasetError, match="differs from data.split_file"):
        resolve_split(ds, cfg.model_copy(update={"split_file": str(tmp_path / "other.json")}), tmp_path)


def test_given_split_must_name_known_images(synth_dir, tmp_path):
    ds = load_canonical(synth_dir / "annotations.coco.json")
    make_splits(ds, seed=0, fractions=(0.6, 0.2, 0.2)).save(tmp_path / "given.json")
    names = sorted(img["file_name"] for img in ds.images)
    with pytest.raises(DatasetError, match="not in the dataset"):
        resolve_split(ds.subset(names[:32]), DatasetConfig(split_file=str(tmp_path / "given.json")), tmp_path / "run")
