"""Deterministic train/val/test splits: grouped, multi-label stratified, hashed.

``make_splits`` works on *groups*, not images: images with the same ``content_sha256``
(exact duplicates), near-duplicates by perceptual hash (``data.near_duplicates``: re-encoded
or re-cropped copies of one frame) and images tied by extra group keys (e.g. Kvasir-SEG ids
and their HyperKvasir uuids, ``kvasirseg_hyperkvasir_groups``) are merged into one group
first, so a duplicate can never sit in train and test at once. Groups are then assigned with iterative
stratification (Sechidis et al. 2011, the ``iterative-stratification`` package) over the
image labels, the single-label source class and the box classes, and a repair pass makes
sure every column with at least 3 groups appears in every split.

A ``Split`` records the seed, method, fractions, a hash of the canonical data it was made
from and the file names per split; its ``sha256`` hashes the split content only, so the
same data and seed give the same hash on any machine.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kvasir_ml.config import MAX_SEED
from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.near_duplicates import NearDuplicates
from kvasir_ml.io import atomic_write_json, read_json, read_text_utf8, sha256_json
from kvasir_ml.taxonomy import Taxonomy, TaxonomyError, load_taxonomy

SPLIT_NAMES = ("train", "val", "test")
SPLIT_FORMAT_VERSION = 1


class SplitError(ValueError):
    """A split cannot be made or read; the message names the file and the problem."""


@dataclass
class Split:
    """File names per split plus how they were made. ``sha256`` hashes ``splits`` only."""

    seed: int | None
    method: str
    fractions: tuple[float, ...] | None
    canonical_sha256: str
    splits: dict[str, list[str]]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return sha256_json({name: sorted(self.splits.get(name, [])) for name in SPLIT_NAMES})

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": SPLIT_FORMAT_VERSION,
            "sha256": self.sha256,
            "seed": self.seed,
            "method": self.method,
            "fractions": list(self.fractions) if self.fractions is not None else None,
            "canonical_sha256": self.canonical_sha256,
            "info": self.info,
            "counts": {name: len(self.splits.get(name, [])) for name in SPLIT_NAMES},
            "splits": {name: sorted(self.splits.get(name, [])) for name in SPLIT_NAMES},
        }

    def save(self, path: str | Path) -> Path | None:
        """Write the split atomically (an existing file is backed up); returns the backup."""
        return atomic_write_json(path, self.to_dict(), keep_backup=True)

    def label_counts(self, ds: CanonicalDataset) -> dict[str, dict[str, int]]:
        """``{split: {label: images}}`` for the images of ``ds``."""
        by_file = ds.image_by_file
        out: dict[str, dict[str, int]] = {}
        for name in SPLIT_NAMES:
            counts: dict[str, int] = {}
            for fn in self.splits.get(name, []):
                for label in by_file[fn]["labels"] if fn in by_file else []:
                    counts[label] = counts.get(label, 0) + 1
            out[name] = dict(sorted(counts.items()))
        return out


def load_split(path: str | Path) -> Split:
    """Read a split file and check its stored hash.

    Raises:
        SplitError: missing keys, unknown split names or a hash that does not match the content.
    """
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("splits"), dict):
        raise SplitError(f"{path}: not a split file (no 'splits' object)")
    unknown = set(raw["splits"]) - set(SPLIT_NAMES)
    if unknown:
        raise SplitError(f"{path}: unknown split names {sorted(unknown)}; expected {SPLIT_NAMES}")
    fractions = raw.get("fractions")
    split = Split(
        seed=raw.get("seed"),
        method=raw.get("method", "unknown"),
        fractions=tuple(fractions) if fractions is not None else None,
        canonical_sha256=raw.get("canonical_sha256", ""),
        splits={name: list(raw["splits"].get(name, [])) for name in SPLIT_NAMES},
        info=raw.get("info", {}),
    )
    if raw.get("sha256") and raw["sha256"] != split.sha256:
        raise SplitError(f"{path}: stored sha256 {raw['sha256'][:12]}... does not match its content ({split.sha256[:12]}...); was it edited?")
    return split


def canonical_sha256(ds: CanonicalDataset) -> str:
    """Hash of a dataset's images and boxes (not its ``info``, which holds a timestamp)."""
    return sha256_json({"images": ds.images, "annotations": ds.annotations})


# ---- grouping -------------------------------------------------------------------------
def group_images(ds: CanonicalDataset, groups: Sequence[dict[str, str]]) -> list[list[int]]:
    """Indices of ``ds.images`` merged by content hash and the keys of every ``groups`` map (union-find)."""
    parent = list(range(len(ds.images)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_by_key: dict[str, int] = {}
    for i, img in enumerate(ds.images):
        keys = []
        if img.get("content_sha256"):
            keys.append("sha:" + img["content_sha256"])
        keys += [f"grp{k}:{g[img['file_name']]}" for k, g in enumerate(groups) if img["file_name"] in g]
        for key in keys:
            j = first_by_key.setdefault(key, i)
            parent[find(i)] = find(j)
    members: dict[int, list[int]] = {}
    for i in range(len(ds.images)):
        members.setdefault(find(i), []).append(i)
    # Order groups by their first file name so the result does not depend on file order.
    return sorted(members.values(), key=lambda idx: min(ds.images[i]["file_name"] for i in idx))


def _stratification_matrix(ds: CanonicalDataset, taxonomy: Taxonomy, use_source_class: bool) -> tuple[np.ndarray, list[str]]:
    """(n_images, n_columns) bool: labels, source classes, box classes present."""
    columns = list(taxonomy.label_names)
    label_col = {name: i for i, name in enumerate(columns)}
    extra: dict[str, int] = {}
    if use_source_class:  # sorted, so the columns do not depend on the file order
        for key in sorted({f"class:{img.get('source')}/{img.get('source_class')}" for img in ds.images}):
            extra[key] = len(columns) + len(extra)
    box_images: dict[str, set[int]] = {}
    for ann in ds.annotations:
        box_images.setdefault(f"box:{ds.category_name(ann['category_id'])}", set()).add(ann["image_id"])
    for key in sorted(box_images):
        extra[key] = len(columns) + len(extra)
    columns += list(extra)
    matrix = np.zeros((len(ds.images), len(columns)), dtype=bool)
    for i, img in enumerate(ds.images):
        for name in img["labels"]:
            matrix[i, label_col[name]] = True
        if use_source_class:
            matrix[i, extra[f"class:{img.get('source')}/{img.get('source_class')}"]] = True
        for key, ids in box_images.items():
            if img["id"] in ids:
                matrix[i, extra[key]] = True
    return matrix, columns


def _repair_coverage(assign: np.ndarray, matrix: np.ndarray, fractions: np.ndarray, sizes: np.ndarray) -> int:
    """Move groups so every column with >= 3 groups is in every non-empty split.

    Rarest columns first; from the split holding most of the column, the group whose move
    leaves the fewest columns missing from that split (then the smallest group) moves.
    Returns the number of groups moved.
    """
    moved = 0
    totals = matrix.sum(0)
    wanted = [f for f in range(len(fractions)) if fractions[f] > 0]
    for col in np.argsort(totals, kind="stable"):
        if totals[col] < 3:
            continue
        for fold in wanted:
            counts = np.array([matrix[assign == f, col].sum() for f in range(len(fractions))])
            if counts[fold] > 0:
                continue
            donor = int(np.argmax(counts))
            if counts[donor] < 2:
                continue
            donor_counts = matrix[assign == donor].sum(0)
            candidates = np.flatnonzero((assign == donor) & matrix[:, col])
            # Damage = columns (with >= 3 groups) of which this group is the donor's last one.
            damage = [int(((donor_counts - matrix[c]) == 0)[matrix[c] & (totals >= 3)].sum()) for c in candidates]
            best = min(range(len(candidates)), key=lambda k: (damage[k], sizes[candidates[k]], k))
            assign[candidates[best]] = fold
            moved += 1
    return moved


def make_splits(
    ds: CanonicalDataset,
    seed: int,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    groups: dict[str, str] | None = None,
    use_source_class: bool = True,
    taxonomy: Taxonomy | None = None,
    near_duplicates: NearDuplicates | None = None,
) -> Split:
    """Grouped, multi-label stratified train/val/test split, deterministic by seed.

    Args:
        ds: canonical dataset (its images' ``labels``, ``source_class``, ``content_sha256``).
        seed: random seed; same data + seed -> same split (and ``sha256``).
        fractions: (train, val, test), non-negative, summing to 1.
        groups: extra ``{file_name: group id}``; images sharing an id stay together
            (see ``kvasirseg_hyperkvasir_groups``).
        use_source_class: stratify on the single-label source class too, so small classes
            reach every split.
        taxonomy: defaults to the project taxonomy.
        near_duplicates: perceptual-hash groups (``near_duplicates.near_duplicate_groups``);
            their images stay together, and ``info["near_duplicates"]`` records the groups.

    Returns:
        Split with sorted file names per split.
    """
    check_seed(seed, "split seed")
    from iterstrat.ml_stratifiers import IterativeStratification

    r = np.asarray(fractions, dtype=float)
    if r.shape != (3,) or (r < 0).any() or abs(r.sum() - 1.0) > 1e-6:
        raise SplitError(f"fractions must be 3 non-negative numbers summing to 1, got {tuple(fractions)}")
    if not ds.images:
        raise SplitError("cannot split an empty dataset")
    taxonomy = taxonomy or load_taxonomy()
    members = group_images(ds, [g for g in (groups, near_duplicates and near_duplicates.groups) if g])
    image_matrix, columns = _stratification_matrix(ds, taxonomy, use_source_class)
    group_matrix = np.stack([image_matrix[idx].any(0) for idx in members])
    sizes = np.array([len(idx) for idx in members])
    rng = np.random.RandomState(seed)
    # Shuffle first: the algorithm breaks ties by position, and the order must vary with seed.
    perm = rng.permutation(len(members))
    folds = IterativeStratification(labels=group_matrix[perm], r=r, random_state=rng)
    assign = np.empty(len(members), dtype=int)
    assign[perm] = folds
    moved = _repair_coverage(assign, group_matrix, r, sizes)
    splits: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for g, idx in enumerate(members):
        splits[SPLIT_NAMES[assign[g]]].extend(ds.images[i]["file_name"] for i in idx)
    info = {
        "n_groups": len(members),
        "n_multi_image_groups": int((sizes > 1).sum()),
        "stratified_on": columns,
        "groups_moved_for_coverage": moved,
        "n_images_with_group_keys": len(groups or {}),
        "near_duplicates": _with_cut_links_placed(near_duplicates, splits),
    }
    return Split(seed, "iterative-stratification-grouped", tuple(float(v) for v in r), canonical_sha256(ds),
                 {k: sorted(v) for k, v in splits.items()}, info)


def check_seed(seed: Any, what: str) -> None:
    """Refuse a seed numpy's RandomState cannot take (not an integer in [0, 2**32 - 1]).

    Raises:
        SplitError: naming ``what`` and the value.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise SplitError(f"{what} {seed!r} is not an integer from 0 to {MAX_SEED} (2**32 - 1)")


def _with_cut_links_placed(near: NearDuplicates | None, splits: dict[str, list[str]]) -> dict[str, Any] | None:
    """``near.info`` plus ``cut_links_across_splits``: the links a group cap cut
    (``near_duplicates.max_group_images``) whose two images this split put on different sides:
    near-duplicates that now straddle, named so nobody mistakes the split for leak-free."""
    if near is None:
        return None
    where = {f: name for name, files in splits.items() for f in files}
    across = [[a, b, d, where.get(a), where.get(b)] for a, b, d in near.info.get("cut_links", [])
              if where.get(a) != where.get(b)]
    return {**near.info, "cut_links_across_splits": across} if "cut_links" in near.info else near.info


def kvasirseg_hyperkvasir_groups(ds: CanonicalDataset, csv_path: str | Path) -> dict[str, str]:
    """Group keys tying Kvasir-SEG images to their HyperKvasir twins.

    Args:
        ds: a (combined) canonical dataset.
        csv_path: ``kvasirseg_to_hyperkvasir_uuid.csv`` (``kvasir_seg_id,hyperkvasir_segmented_uuid``).

    Returns:
        ``{file_name: "kvasirseg:<kvasir-seg id>"}`` for every image whose file stem is either id.
    """
    key_by_stem: dict[str, str] = {}
    with io.StringIO(read_text_utf8(csv_path), newline="") as fh:  # errors name the file
        reader = csv.DictReader(fh)
        if not {"kvasir_seg_id", "hyperkvasir_segmented_uuid"} <= set(reader.fieldnames or []):
            raise SplitError(f"{csv_path}: expected columns kvasir_seg_id,hyperkvasir_segmented_uuid")
        for row in reader:
            key = f"kvasirseg:{row['kvasir_seg_id']}"
            key_by_stem[row["kvasir_seg_id"]] = key
            key_by_stem[row["hyperkvasir_segmented_uuid"]] = key
    return {
        img["file_name"]: key_by_stem[Path(img["file_name"]).stem]
        for img in ds.images
        if Path(img["file_name"]).stem in key_by_stem
    }


_FOLD_COUNT_IN_NAME = re.compile(r"^(\d+)_fold")


def read_fold_file(csv_path: str | Path) -> dict[str, tuple[str, int]]:
    """``{file name: (class name, fold)}`` from a ``file-name;class-name;split-index`` file.

    An image listed twice, or a fold outside the file's folds, would silently decide where an
    image goes (the last row wins; an unknown fold lands in train): both are refused.

    Raises:
        SplitError: naming the file, the line(s) and the problem.
    """
    folds: dict[str, tuple[str, int]] = {}
    first_line: dict[str, int] = {}
    twice: list[str] = []
    with io.StringIO(read_text_utf8(csv_path), newline="") as fh:  # errors name the file
        reader = csv.reader(fh, delimiter=";")
        header = next(reader, None)
        if header != ["file-name", "class-name", "split-index"]:
            raise SplitError(f"{csv_path}: expected header file-name;class-name;split-index, got {header}")
        for line, row in enumerate(reader, start=2):
            if len(row) != 3 or not row[2].strip().isdigit():
                raise SplitError(f"{csv_path}:{line}: expected file-name;class-name;split-index, got {row}")
            name = row[0].strip()
            if name in folds:
                twice.append(f"{name!r} on lines {first_line[name]} (fold {folds[name][1]}) and {line} "
                             f"(fold {int(row[2])})")
                continue
            first_line[name] = line
            folds[name] = (row[1].strip(), int(row[2]))
    if twice:
        raise SplitError(f"{csv_path}: {len(twice)} image(s) listed more than once (an image belongs to one fold): "
                         + "; ".join(twice[:5]) + (" ..." if len(twice) > 5 else ""))
    named = _FOLD_COUNT_IN_NAME.match(Path(csv_path).name)
    present = {fold for _, fold in folds.values()}
    n_folds = int(named.group(1)) if named else next(k for k in range(len(present) + 1) if k not in present)
    stray = [(name, fold) for name, (_, fold) in folds.items() if fold >= n_folds]
    if stray:
        why = (f"the file name says {n_folds} folds, 0..{n_folds - 1}" if named
               else f"folds run from 0 without a gap; fold {n_folds} is empty")
        raise SplitError(f"{csv_path}: {len(stray)} image(s) in a fold outside the file's folds ({why}), e.g. "
                         + ", ".join(f"{name!r} (line {first_line[name]}: fold {fold})" for name, fold in stray[:5])
                         + "; unknown folds would otherwise go to train silently")
    return folds


def split_from_hyperkvasir_folds(
    ds: CanonicalDataset,
    csv_path: str | Path,
    val_fold: int,
    test_fold: int | None = None,
    unlisted: str = "error",
    taxonomy: Taxonomy | None = None,
) -> Split:
    """Use HyperKvasir's official fold file (``file-name;class-name;split-index``) as-is.

    Args:
        ds: canonical HyperKvasir dataset; images are matched by base file name.
        csv_path: ``2_fold_split.csv`` or ``5_fold_split.csv``.
        val_fold: fold index that becomes ``val``.
        test_fold: fold index that becomes ``test`` (None: empty test split).
        unlisted: images the fold file does not list: "error" (raise) or "train".
        taxonomy: for checking the fold file's class names against ``source_class``.

    Returns:
        Split; ``info`` records the fold file, folds and any class disagreements.

    Raises:
        SplitError: a malformed row, an image listed twice, a fold outside the file's folds
            (``<K>_fold_split.csv`` has folds 0..K-1; otherwise they must run 0..max without a
            gap), or a val/test fold the file does not have — each naming the file and line.
    """
    if unlisted not in ("error", "train"):
        raise SplitError(f"unlisted must be 'error' or 'train', got {unlisted!r}")
    taxonomy = taxonomy or load_taxonomy()
    src = taxonomy.source("hyperkvasir")
    folds = read_fold_file(csv_path)
    fold_ids = sorted({fold for _, fold in folds.values()})
    for name, fold in (("val", val_fold), ("test", test_fold)):
        if fold is not None and fold not in fold_ids:
            raise SplitError(f"{csv_path}: the {name} fold {fold} is not in the file (its folds: {fold_ids})")
    if test_fold is not None and test_fold == val_fold:
        raise SplitError(f"{csv_path}: the val and test fold are both {val_fold}; give two different folds")
    splits: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    missing, mismatched = [], []
    for img in ds.images:
        entry = folds.get(Path(img["file_name"]).name)
        if entry is None:
            missing.append(img["file_name"])
            if unlisted == "train":
                splits["train"].append(img["file_name"])
            continue
        try:
            if src.canonical_class(entry[0]) != img.get("source_class"):
                mismatched.append(img["file_name"])
        except TaxonomyError:
            mismatched.append(img["file_name"])
        fold = entry[1]
        name = "val" if fold == val_fold else "test" if fold == test_fold else "train"
        splits[name].append(img["file_name"])
    if missing and unlisted == "error":
        raise SplitError(f"{csv_path}: {len(missing)} images of the dataset are not listed, e.g. {missing[:3]} "
                         "(pass unlisted='train' to put them in train)")
    info = {"fold_file": Path(csv_path).name, "val_fold": val_fold, "test_fold": test_fold,
            "n_unlisted_in_train": len(missing), "class_mismatches": mismatched[:20],
            "n_class_mismatches": len(mismatched)}
    return Split(None, "hyperkvasir-official-folds", None, canonical_sha256(ds),
                 {k: sorted(v) for k, v in splits.items()}, info)
