"""From a ``DatasetConfig`` to files: the canonical file, its data root and the split.

Classifier runs, detector runs and comparison experiments resolve their data alike. A
synthetic dataset is generated once into ``<dir>/data`` and reused (resume). The split
frozen in ``<dir>/split.json`` wins (a resumed run, an experiment's later calls); else the
configured ``split_file`` is used, else a new stratified split is made; either is then
saved to ``<dir>/split.json``, so the folder always holds the split it was trained on.
A configured ``split_file`` is used as it is; the copies it lets straddle splits (exact,
near-duplicate, twins) are reported and recorded in ``info.straddling`` (``split_audit``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from kvasir_ml.config import DatasetConfig
from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.image_root import image_root
from kvasir_ml.data.splits import Split, load_split, make_splits

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """The configured dataset or split cannot be used; the message names the file and the problem."""


def resolve_dataset(cfg: DatasetConfig, work_dir: Path, may_write: bool = True) -> tuple[Path, Path]:
    """Canonical file and data root; synthesizes the default dataset into ``work_dir/data`` if asked.

    Args:
        cfg: the data section of a run or experiment config.
        work_dir: the run (or experiment) folder.
        may_write: this process may create files (False on non-zero DDP ranks, which wait
            for rank 0 to synthesize).

    Returns:
        (canonical file, data root).

    Raises:
        DatasetError: ``cfg.canonical`` names a file that does not exist.
    """
    if not cfg.is_synthetic:
        assert cfg.canonical is not None  # is_synthetic covers None
        canonical = Path(cfg.canonical)
        if not canonical.is_file():
            raise DatasetError(f"data.canonical: {canonical} does not exist")
        return canonical, image_root(canonical, cfg.root)
    out = work_dir / "data"
    canonical = out / "annotations.coco.json"
    if may_write and not canonical.is_file():  # a resumed run reuses its data
        from kvasir_ml.data.synth import synthesize

        canonical = Path(synthesize(out, n=cfg.synthetic_n, seed=cfg.synthetic_seed,
                                    cooccurrence=cfg.synthetic_cooccurrence,
                                    finding_contrast=cfg.synthetic_finding_contrast))
        log.info("synthesized %d images into %s", cfg.synthetic_n, out)
    return canonical, out


def dataset_name(cfg: DatasetConfig, ds: CanonicalDataset, canonical: Path) -> str:
    """The name runs report and tag: ``synthetic``, else the canonical file's source or stem."""
    return "synthetic" if cfg.is_synthetic else str(ds.info.get("source") or canonical.stem)


def resolve_split(ds: CanonicalDataset, cfg: DatasetConfig, work_dir: Path, may_write: bool = True,
                  root: Path | None = None) -> Split:
    """The split of ``ds``: ``work_dir/split.json`` if present, else ``cfg.split_file``, else a new one.

    A new split groups exact duplicates, near-duplicates by perceptual hash
    (``cfg.near_duplicate_max_distance``) and Kvasir-SEG/HyperKvasir twins (``cfg.twin_map``).
    A given ``split_file`` is not changed: the same groups are computed and those that straddle
    its splits are logged (count and names) and recorded in its ``info["straddling"]``.

    Args:
        ds: the dataset (after any subsetting the caller does) the split must cover.
        cfg: the data section (split_file, split_seed, fractions, near-duplicate and twin grouping).
        work_dir: the folder whose ``split.json`` freezes the split.
        may_write: save a new split to ``work_dir/split.json``.
        root: the folder ``ds``'s file names are relative to (for the perceptual hashes);
            None = the root ``resolve_dataset(cfg, work_dir)`` gives.

    Returns:
        The split.

    Raises:
        DatasetError: ``cfg.split_file`` names images not in ``ds``, or differs from the
            split already frozen in ``work_dir``.
        SplitError: an unreadable split file, or ``ds`` cannot be split.
    """
    saved = work_dir / "split.json"
    given = _load_given_split(cfg.split_file, ds) if cfg.split_file else None
    if saved.is_file():
        split = load_split(saved)
        if given is not None and given.sha256 != split.sha256:
            raise DatasetError(f"{saved} (frozen by an earlier call) differs from data.split_file "
                               f"{cfg.split_file}; use a new folder")
        return split
    if given is not None:
        _audit_given(given, ds, cfg, work_dir, root)
    split = given or _new_split(ds, cfg, work_dir, root)
    if may_write:
        split.save(saved)
    return split


def _new_split(ds: CanonicalDataset, cfg: DatasetConfig, work_dir: Path, root: Path | None) -> Split:
    if cfg.near_duplicate_max_distance is not None and root is None:
        root = resolve_dataset(cfg, work_dir, may_write=False)[1]
    cache_dir = getattr(cfg, "cache_dir", None)  # not a DatasetConfig key in every config
    cache = Path(cache_dir) if cache_dir else work_dir / "cache"
    split = new_split(ds, cfg, root, hash_cache=cache)
    near = split.info.get("near_duplicates")
    if near:
        log.info("near-duplicates: %d groups of %d images (perceptual hash, <= %d bits)",
                 near["n_groups"], near["n_images_grouped"], near["max_distance"])
    if cfg.twin_map:
        split.info["twin_map"] = Path(cfg.twin_map).name
    return split


def new_split(ds: CanonicalDataset, cfg: DatasetConfig, root: str | Path | None, hash_cache: str | Path | None,
              progress: bool = False) -> Split:
    """The split recipe, written once for runs and ``kvasir-ml data split``: exact duplicates,
    near-duplicates by perceptual hash and Kvasir-SEG/HyperKvasir twins each stay in one split,
    stratified over labels, source class and box classes.

    Args:
        ds: the dataset to split.
        cfg: ``split_seed``, ``fractions``, ``near_duplicate_max_distance`` (None = exact duplicates
            only), ``near_duplicate_max_group`` and ``twin_map`` are used.
        root: the folder ``ds``'s file names are relative to (read for the perceptual hashes).
        hash_cache: folder of the perceptual-hash cache (by file content).
        progress: show a progress bar while hashing.

    Returns:
        The split; ``info["near_duplicates"]`` records the grouping (None without hashing).
    """
    from kvasir_ml.data.near_duplicates import near_duplicate_groups

    near = None
    if cfg.near_duplicate_max_distance is not None:
        if root is None:
            raise ValueError("near-duplicate grouping needs the image root")
        near = near_duplicate_groups([img["file_name"] for img in ds.images], root, cfg.near_duplicate_max_distance,
                                     max_group_images=cfg.near_duplicate_max_group, cache_dir=hash_cache,
                                     progress=progress)
    return make_splits(ds, seed=cfg.split_seed, fractions=tuple(cfg.fractions), groups=twin_groups(ds, cfg),
                       near_duplicates=near)


def twin_groups(ds: CanonicalDataset, cfg: DatasetConfig) -> dict[str, str] | None:
    """``{file_name: group key}`` from ``cfg.twin_map`` (Kvasir-SEG/HyperKvasir twins), else None."""
    from kvasir_ml.data.splits import kvasirseg_hyperkvasir_groups

    return kvasirseg_hyperkvasir_groups(ds, cfg.twin_map) if cfg.twin_map else None


def audit_split(split: Split, ds: CanonicalDataset, cfg: DatasetConfig, root: str | Path | None) -> dict:
    """Find the copies (exact, near-duplicate, twins, as ``new_split`` groups them) that a given
    split lets straddle; the split is not changed, the record goes into ``info["straddling"]``."""
    from kvasir_ml.data.split_audit import audit_given_split

    return audit_given_split(ds, split, root, cfg.near_duplicate_max_distance, twin_groups(ds, cfg))


def _audit_given(split: Split, ds: CanonicalDataset, cfg: DatasetConfig, work_dir: Path, root: Path | None) -> None:
    from kvasir_ml.data.split_audit import report_straddling

    if cfg.near_duplicate_max_distance is not None and root is None:
        root = resolve_dataset(cfg, work_dir, may_write=False)[1]
    report_straddling(audit_split(split, ds, cfg, root))


def _load_given_split(path: str, ds: CanonicalDataset) -> Split:
    split = load_split(path)
    known = {img["file_name"] for img in ds.images}
    missing = [f for names in split.splits.values() for f in names if f not in known]
    if missing:
        raise DatasetError(f"{path}: {len(missing)} files are not in the dataset, e.g. {missing[:3]}")
    return split
