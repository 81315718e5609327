"""One split recipe (``kvasir_ml.data.resolve``) for runs and ``kvasir-ml data split``: the CLI's
options map onto ``DatasetConfig`` keys in one place, and its split files are byte-identical to
those the CLI wrote before the recipe moved into the library.

The reference files in ``split_reference/`` were written by ``kvasir-ml data split`` at commit
38ae278 (before the move) from the dataset ``_dataset`` builds; regenerate them only on purpose:
``PYTHONPATH=tests python tests/data/test_split_recipe.py OUT_DIR`` (then copy the JSON files over).
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
from dataset_copies import add_copies

from kvasir_ml.cli import main as cli_main
from kvasir_ml.config import DatasetConfig
from kvasir_ml.data.coco import load_canonical
from kvasir_ml.data.resolve import new_split

REFERENCE = Path(__file__).with_name("split_reference")
# name -> `data split` options (the canonical file, --out and --hash-cache are added)
CASES = {
    "near_dup_seed3": ["--seed", "3", "--max-group", "2"],
    "exact_only_seed5": ["--seed", "5", "--near-duplicate-max-distance", "-1", "--fractions", "0.6", "0.2", "0.2"],
    "folds": ["--folds", "FOLDS", "--val-fold", "1"],
}


def _dataset(synth: Path, out: Path) -> tuple[Path, Path]:
    """The 64 synthetic frames (``synthesize(n=64, seed=0)``) plus an exact and a re-encoded copy
    (near-duplicates to group), and a fold file that puts the exact copy apart from its original.
    Returns (canonical, fold file)."""
    root = out / "synth"
    shutil.copytree(synth, root)
    ds = load_canonical(root / "annotations.coco.json")
    first, second = add_copies(ds, root)
    canonical = root / "copies.coco.json"
    ds.save(canonical)
    folds = out / "2_fold_split.csv"
    with open(folds, "w", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(["file-name", "class-name", "split-index"])
        for i, img in enumerate(ds.images):
            fold = 1 if img["file_name"] == "images/copy-exact.jpg" else 0 if img is first else i % 2
            w.writerow([Path(img["file_name"]).name, img["source_class"], fold])
    return canonical, folds


def _write_splits(synth: Path, work: Path, out: Path) -> dict[str, Path]:
    from kvasir_ml.data.near_duplicates import near_duplicate_groups

    canonical, folds = _dataset(synth, work)
    # fill the hash cache in this process (worker processes cost seconds to start); a split file
    # does not record cache hits, so the CLI writes the same bytes either way
    names = [img["file_name"] for img in load_canonical(canonical).images]
    near_duplicate_groups(names, canonical.parent, cache_dir=work / "hashes", workers=0)
    written = {}
    for name, options in CASES.items():
        target = out / f"{name}.json"
        argv = ["data", "split", str(canonical), "--out", str(target), "--hash-cache", str(work / "hashes"),
                *[str(folds) if o == "FOLDS" else o for o in options]]
        assert cli_main(argv) == 0, argv
        written[name] = target
    return written


@pytest.fixture(scope="module")
def cli_splits(synth_dir, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("split-recipe")
    return _write_splits(synth_dir, tmp / "work", tmp / "out")


def _without_canonical_hash(raw: bytes) -> bytes:
    """A split file's bytes less its ``canonical_sha256`` lines: the synthetic JPEGs' bytes (so
    the canonical file's ``content_sha256`` values and hash) differ between machines (seen
    between an Intel AVX-512 and an AMD EPYC box, with identical splits), while everything the
    split decides must not."""
    return b"".join(line for line in raw.splitlines(keepends=True) if b'"canonical_sha256"' not in line)


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_split_files_are_byte_identical_to_those_before_the_recipe_moved(cli_splits, name):
    written, reference = cli_splits[name].read_bytes(), (REFERENCE / f"{name}.json").read_bytes()
    assert written.count(b'"canonical_sha256"') == reference.count(b'"canonical_sha256"') >= 1
    assert _without_canonical_hash(written) == _without_canonical_hash(reference), (
        f"`data split {' '.join(CASES[name])}` no longer writes the split it wrote before")


def test_a_run_and_the_cli_make_the_same_split_from_the_same_settings(cli_splits):
    canonical = next(cli_splits["near_dup_seed3"].parent.parent.glob("work/synth/copies.coco.json"))
    cfg = DatasetConfig(canonical=str(canonical), split_seed=3, near_duplicate_max_group=2)
    hashes = canonical.parents[1] / "hashes"  # the CLI's hash cache: only the split is computed again
    split = new_split(load_canonical(canonical), cfg, canonical.parent, hash_cache=hashes)
    assert split.to_dict() == load_split_dict(cli_splits["near_dup_seed3"])
    assert split.info["near_duplicates"]["n_groups"] == 2  # both copies found their originals


def load_split_dict(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def test_cli_options_are_refused_by_their_own_names(cli_splits, tmp_path, capsys):
    canonical = next(cli_splits["near_dup_seed3"].parent.parent.glob("work/synth/copies.coco.json"))
    out = tmp_path / "split.json"
    assert cli_main(["data", "split", str(canonical), "--out", str(out), "--near-duplicate-max-distance", "65"]) == 2
    assert "--near-duplicate-max-distance" in capsys.readouterr().err and not out.exists()


if __name__ == "__main__":  # regenerate the reference files (see the module docstring)
    import tempfile

    from kvasir_ml.data.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        synthesize(Path(tmp) / "synth", n=64, seed=0)
        for path in _write_splits(Path(tmp) / "synth", Path(tmp) / "work", Path(sys.argv[1])).values():
            print(path)
