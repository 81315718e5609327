"""A given split (``data.split_file``, HyperKvasir's official folds) is used as it is; the copies
it lets straddle splits are reported by name and recorded in ``info.straddling``."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from dataset_copies import add_copies

from kvasir_ml.cli import main as cli_main
from kvasir_ml.config import DatasetConfig
from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.data.resolve import resolve_split
from kvasir_ml.data.split_audit import audit_given_split, format_straddling
from kvasir_ml.data.splits import Split, load_split, make_splits, split_from_hyperkvasir_folds


@pytest.fixture()
def with_copies(synth_dir, tmp_path) -> tuple[CanonicalDataset, Path, str, str]:
    """The synthetic data plus a byte-identical copy of one frame and a re-encoded copy of another."""
    root = tmp_path / "data"
    shutil.copytree(synth_dir / "images", root / "images")
    ds = load_canonical(synth_dir / "annotations.coco.json")
    first, second = add_copies(ds, root)
    return ds, root, first["file_name"], second["file_name"]


def _given(ds: CanonicalDataset, test: list[str]) -> Split:
    names = [img["file_name"] for img in ds.images if img["file_name"] not in test]
    splits = {"train": names[:-8], "val": names[-8:], "test": sorted(test)}
    return Split(None, "given", None, "", splits)


def test_copies_across_a_given_split_are_named_and_the_split_is_unchanged(with_copies):
    ds, root, first, second = with_copies
    split = _given(ds, ["images/copy-exact.jpg", "images/copy-reencoded.jpg"])
    before, sha = json.dumps(split.splits), split.sha256
    record = audit_given_split(ds, split, root, max_distance=12)
    assert json.dumps(split.splits) == before and split.sha256 == sha  # used as it is
    assert split.info["straddling"] is record and record["n_straddling"] == 2 and record["n_images"] == 4
    assert {tuple(g["files"]) for g in record["groups"]} == {
        tuple(sorted([first, "images/copy-exact.jpg"])), tuple(sorted([second, "images/copy-reencoded.jpg"]))}
    text = format_straddling(record)
    assert text.startswith("copies across splits: 2 groups (4 images)")
    assert "images/copy-reencoded.jpg [test]" in text and f"{second} [train]" in text
    # exact copies alone (no perceptual hash): only the byte-identical pair
    assert audit_given_split(ds, _given(ds, ["images/copy-exact.jpg", "images/copy-reencoded.jpg"]), root,
                             max_distance=None)["n_straddling"] == 1
    # copies kept together: nothing straddles
    together = _given(ds, sorted([first, second, "images/copy-exact.jpg", "images/copy-reencoded.jpg"]))
    assert audit_given_split(ds, together, root, max_distance=12)["n_straddling"] == 0


def test_a_split_made_here_is_checked_from_its_recorded_groups(with_copies, tmp_path):
    from kvasir_ml.data.near_duplicates import near_duplicate_groups

    ds, root, *_ = with_copies
    near = near_duplicate_groups([img["file_name"] for img in ds.images], root, 12)
    split = make_splits(ds, seed=0, near_duplicates=near)
    # the recorded groups are used: no image is read (the root does not exist)
    record = audit_given_split(ds, split, tmp_path / "absent", max_distance=12)
    assert record["n_straddling"] == 0 and record["n_groups_checked"] >= 2


def test_resolve_split_reports_and_records_copies_of_a_given_split_file(with_copies, tmp_path, caplog):
    ds, root, first, second = with_copies
    given = _given(ds, ["images/copy-exact.jpg", "images/copy-reencoded.jpg"])
    given_path = tmp_path / "given.split.json"
    given.save(given_path)
    cfg = DatasetConfig(canonical=str(tmp_path / "unused.json"), root=str(root), split_file=str(given_path))
    work = tmp_path / "run"
    work.mkdir()
    with caplog.at_level(logging.WARNING, logger="kvasir_ml.data.split_audit"):
        split = resolve_split(ds, cfg, work, root=root)
    assert split.splits == load_split(given_path).splits and split.sha256 == given.sha256
    saved = json.loads((work / "split.json").read_text())
    assert saved["info"]["straddling"]["n_straddling"] == 2
    assert [g["files"] for g in saved["info"]["straddling"]["groups"]] == [
        sorted([first, "images/copy-exact.jpg"]), sorted([second, "images/copy-reencoded.jpg"])]
    assert "copies across splits: 2 groups" in caplog.text and "images/copy-exact.jpg [test]" in caplog.text


def test_cli_folds_report_copies_and_warn_about_an_empty_test_split(with_copies, tmp_path, capsys):
    ds, root, first, _ = with_copies
    canonical = root / "canonical.coco.json"
    ds.save(canonical)
    folds = tmp_path / "2_fold_split.csv"
    with open(folds, "w", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["file-name", "class-name", "split-index"])
        for i, img in enumerate(ds.images):
            fold = 1 if img["file_name"] == "images/copy-exact.jpg" else 0 if img["file_name"] == first else i % 2
            w.writerow([Path(img["file_name"]).name, img["source_class"], fold])
    out = tmp_path / "split.json"
    assert cli_main(["data", "split", str(canonical), "--out", str(out), "--folds", str(folds), "--val-fold", "1"]) == 0
    text = capsys.readouterr().out
    assert "copies across splits: 1 groups (2 images)" in text and "images/copy-exact.jpg [val]" in text
    assert "warning: the test split is empty (no --test-fold)" in text
    split = load_split(out)
    assert split.info["straddling"]["n_straddling"] == 1
    assert split.splits == split_from_hyperkvasir_folds(ds, folds, 1).splits  # folds used as they are


@pytest.mark.realdata
def test_official_folds_on_the_real_segmented_polyps(shared_data, tmp_path):
    """Kvasir-SEG's frames under their HyperKvasir names, split by the official fold files."""
    rows = list(csv.DictReader(open(shared_data / "hyperkvasir" / "kvasirseg_to_hyperkvasir_uuid.csv",
                                    encoding="utf-8")))
    ds = CanonicalDataset.new("hyperkvasir")
    for row in rows:
        link = tmp_path / f"{row['hyperkvasir_segmented_uuid']}.jpg"
        os.symlink((shared_data / "kvasir-seg" / "images" / f"{row['kvasir_seg_id']}.jpg").resolve(), link)
        ds.add_image(link.name, 622, 529, ["polyp"], "hyperkvasir", "polyps")
    split = split_from_hyperkvasir_folds(ds, shared_data / "hyperkvasir" / "5_fold_split.csv", 3, 4)
    given = json.dumps(split.splits)
    record = audit_given_split(ds, split, tmp_path, max_distance=12)
    # measured: 14 groups (30 images); docs/near_duplicates.md lists the method's misses and false ties
    assert record["n_straddling"] >= 5 and json.dumps(split.splits) == given
    for group in record["groups"]:
        assert len({s for s in group["splits"] if s}) > 1


@pytest.mark.realdata
def test_the_readme_fold_example_gives_three_non_empty_splits(shared_data):
    """The documented ``data split --folds`` line, run on the real fold file (image entries from
    the real label CSV; no pixels needed once the fold file decides)."""
    import shlex

    from cli_docs import command_lines
    from kvasir_ml.cli import build_parser
    from kvasir_ml.taxonomy import load_taxonomy

    from cli_docs import DOCS

    readme = "\n".join(p.read_text(encoding="utf-8") for p in DOCS)
    lines = [argv for argv in command_lines(readme) if argv[:2] == ["data", "split"] and "--folds" in argv]
    assert lines, "README/docs have no data split --folds example"
    tx = load_taxonomy()
    ds = CanonicalDataset.new("hyperkvasir")
    for row in csv.DictReader(open(shared_data / "hyperkvasir" / "image-labels.csv", encoding="utf-8")):
        cls = tx.source("hyperkvasir").canonical_class(row["Finding"])
        ds.add_image(f"{row['Video file']}.jpg", 64, 48, tx.labels_for("hyperkvasir", cls), "hyperkvasir", cls)
    for argv in lines:
        args = build_parser().parse_args(argv)
        split = split_from_hyperkvasir_folds(ds, shared_data / "hyperkvasir" / Path(args.folds).name,
                                             args.val_fold, args.test_fold, unlisted="train")
        empty = [name for name, files in split.splits.items() if not files]
        assert not empty, f"README line {shlex.join(argv)} leaves {empty} empty"
