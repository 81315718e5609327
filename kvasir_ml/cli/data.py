"""``kvasir-ml data {index,stats,split,merge,synth}``: datasets -> canonical files, stats, splits."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kvasir_ml.cli.common import add_command, add_group, add_hidden_alias, count

if TYPE_CHECKING:
    from kvasir_ml.config import DatasetConfig


def _index(args: argparse.Namespace) -> int:
    from kvasir_ml.data.sources import INDEXERS

    indexer = INDEXERS[args.source]
    from kvasir_ml.data.image_root import remember_image_root

    result = indexer(args.root, workers=args.workers, strict=args.strict)
    remember_image_root(result.dataset.info, args.root, args.out)  # data split/train/eval need no --root
    backup = result.dataset.save(args.out)
    print(result.report(max_per_reason=args.show))
    print(f"wrote {args.out}" + (f" (previous version kept as {backup})" if backup else ""))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.stats import dataset_stats, format_stats

    stats = dataset_stats(load_canonical(args.file), top_sizes=args.top)
    if args.json:
        json.dump(stats, sys.stdout, indent=1)
        print()
    else:
        print(format_stats(stats))
    return 0


# `data split` option -> DatasetConfig key: the one place the CLI's names meet the library's.
SPLIT_OPTIONS = {"seed": "split_seed", "fractions": "fractions", "uuid_map": "twin_map",
                 "near_duplicate_max_distance": "near_duplicate_max_distance", "max_group": "near_duplicate_max_group"}


def split_settings(args: argparse.Namespace) -> DatasetConfig:
    """The ``data split`` options as the ``DatasetConfig`` that runs use (``-1`` bits = null).

    Raises:
        ConfigError: an option out of range, named as the command line spells it.
    """
    from pydantic import ValidationError

    from kvasir_ml.config import ConfigError, DatasetConfig

    values = {key: getattr(args, option) for option, key in SPLIT_OPTIONS.items()}
    if values["near_duplicate_max_distance"] is not None and values["near_duplicate_max_distance"] < 0:
        values["near_duplicate_max_distance"] = None  # -1 on the command line: exact duplicates only
    try:
        return DatasetConfig(**values)
    except ValidationError as exc:
        option = {key: option for option, key in SPLIT_OPTIONS.items()}
        problems = [f"--{option.get(str(err['loc'][0]), str(err['loc'][0])).replace('_', '-')}: {err['msg']}"
                    if err["loc"] else err["msg"] for err in exc.errors()]
        raise ConfigError("data split: " + "; ".join(problems)) from None


def _split(args: argparse.Namespace) -> int:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.image_root import image_root
    from kvasir_ml.data.near_duplicates import format_near_duplicates
    from kvasir_ml.data.resolve import audit_split, new_split
    from kvasir_ml.data.split_audit import format_straddling
    from kvasir_ml.data.splits import split_from_hyperkvasir_folds

    cfg = split_settings(args)
    ds = load_canonical(args.file)
    root = image_root(args.file, args.root, ds.info)  # for the perceptual hashes
    if args.folds:  # the official folds as they are; copies across them are reported, not moved
        split = split_from_hyperkvasir_folds(ds, args.folds, args.val_fold, args.test_fold,
                                             unlisted="train" if args.unlisted_train else "error")
        print(format_straddling(audit_split(split, ds, cfg, root)))
    else:
        split = new_split(ds, cfg, root, hash_cache=args.hash_cache or Path(args.out).parent, progress=True)
        if split.info.get("near_duplicates"):
            print(format_near_duplicates(split.info["near_duplicates"]))
    split.save(args.out)
    print(f"wrote {args.out}  sha256 {split.sha256}")
    for name in (n for n in split.splits if not split.splits[n]):
        print(f"warning: the {name} split is empty" + (" (no --test-fold)" if args.folds and name == "test" else "")
              + "; training refuses an empty split")
    counts = split.label_counts(ds)
    labels = sorted({label for c in counts.values() for label in c})
    width = max([len(x) for x in labels] + [5])
    print(f"{'label':<{width}}  " + "  ".join(f"{name:>6}" for name in counts))
    print(f"{'IMAGES':<{width}}  " + "  ".join(f"{len(split.splits[name]):6d}" for name in counts))
    for label in labels:
        print(f"{label:<{width}}  " + "  ".join(f"{counts[name].get(label, 0):6d}" for name in counts))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from kvasir_ml.data.synth import synthesize

    out = synthesize(args.out, n=args.images, seed=args.seed, cooccurrence=args.cooccurrence,
                     finding_contrast=args.finding_contrast)
    print(f"wrote {args.images} synthetic images under {args.out} and the canonical file {out}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from kvasir_ml.data.coco import load_canonical, merge_canonical

    parts = []
    for item in args.parts:
        prefix, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"merge part {item!r} is not of the form PREFIX=FILE")
        parts.append((prefix, load_canonical(path)))
    merged = merge_canonical(parts)
    backup = merged.save(args.out)
    print(f"wrote {args.out}: {len(merged.images)} images, {len(merged.annotations)} boxes"
          + (f" (previous version kept as {backup})" if backup else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    data = add_group(sub, "data", dest="data_command",
                     help="index datasets into canonical files; statistics, splits, merges, synthetic data",
                     description="Every dataset becomes one canonical COCO file (image-level labels on each "
                                 "image entry, boxes in pixels); splits, training and Label Studio start from it.")
    from kvasir_ml.data.near_duplicates import DEFAULT_MAX_DISTANCE as DEFAULT_NEAR_DUP_BITS  # numpy + PIL only

    q = add_command(data, "index", help="index a dataset folder into a canonical COCO file", examples=[
        "kvasir-ml data index kvasir-seg ../shared/data/kvasir-seg --out data/kvasir-seg.coco.json",
        "kvasir-ml data index kvasir-v2 ROOT --out data/kvasir-v2.coco.json --strict"],
        description="Index a dataset folder into a canonical COCO file. Every file skipped or converted "
                    "(corrupt, grayscale, unknown class folder, box outside the image, ...) is reported.")
    q.add_argument("source", choices=["kvasir-v2", "hyperkvasir", "kvasir-seg", "cvc-clinicdb"], metavar="SOURCE",
                   help="dataset layout: kvasir-v2, hyperkvasir, kvasir-seg or cvc-clinicdb (boxes from its masks; "
                        "README: where to get each "
                        "dataset and how it is laid out)")
    q.add_argument("root", metavar="ROOT", help="dataset folder (file_name entries are relative to it)")
    q.add_argument("--out", required=True, metavar="FILE",
                   help="canonical JSON to write (an existing one is kept as a backup)")
    q.add_argument("--strict", action="store_true", help="fail on any skipped or converted input")
    q.add_argument("--workers", type=count(0), default=None, metavar="N",
                   help="decoding processes, 0 = in this process (default: up to 2)")
    q.add_argument("--show", type=count(0), default=5, metavar="N", help="examples printed per problem kind")
    q.set_defaults(func=_index)

    q = add_command(data, "stats", help="label, box, size and inset statistics of a canonical file", examples=[
        "kvasir-ml data stats data/kvasir-seg.coco.json",
        "kvasir-ml data stats data/kvasir-seg.coco.json --json > stats.json"])
    q.add_argument("file", metavar="FILE", help="canonical JSON")
    q.add_argument("--json", action="store_true", help="print JSON instead of tables")
    q.add_argument("--top", type=count(0), default=5, metavar="N", help="most common image sizes to list")
    q.set_defaults(func=_stats)

    q = add_command(data, "split", help="deterministic grouped, stratified train/val/test split", examples=[
        "kvasir-ml data split data/kvasir-seg.coco.json --out data/kvasir-seg.split.json --seed 0",
        "kvasir-ml data split data/combined.coco.json --out data/combined.split.json \\",
        "    --uuid-map ../shared/data/hyperkvasir/kvasirseg_to_hyperkvasir_uuid.csv",
        "kvasir-ml data split data/hyperkvasir.coco.json --out split.json --folds 5_fold_split.csv --val-fold 3 "
        "--test-fold 4"],
        description="Deterministic train/val/test split: stratified over labels, source class and box "
                    "classes, grouped by image content so duplicates never straddle splits. The file "
                    "records its sha256; give it to training as data.split_file=FILE.")
    q.add_argument("file", metavar="FILE", help="canonical JSON")
    q.add_argument("--out", required=True, metavar="FILE", help="split JSON to write")
    q.add_argument("--seed", type=int, default=0, metavar="N", help="the same seed and file give the same split")
    q.add_argument("--fractions", type=float, nargs=3, default=[0.7, 0.15, 0.15], metavar=("TRAIN", "VAL", "TEST"),
                   help="split fractions (summing to 1)")
    q.add_argument("--uuid-map", metavar="FILE",
                   help="kvasirseg_to_hyperkvasir_uuid.csv: keep Kvasir-SEG/HyperKvasir twins together")
    q.add_argument("--root", metavar="DIR",
                   help="folder the file names are relative to (for the perceptual hashes); default: the file's folder")
    q.add_argument("--near-duplicate-max-distance", type=int, default=DEFAULT_NEAR_DUP_BITS, metavar="BITS",
                   help="keep images whose perceptual hashes differ in <= BITS of 64 together (measured on "
                        "Kvasir-SEG: docs/near_duplicates.md); -1: exact duplicates only")
    q.add_argument("--max-group", type=count(2), default=None, metavar="N",
                   help="cut near-duplicate groups of more than N images (chained video frames) at their weakest "
                        "links; the cut links and the splits they landed in are recorded (default: never cut)")
    q.add_argument("--hash-cache", metavar="DIR",
                   help="folder of the perceptual-hash cache (by file content; a re-split reuses it); "
                        "default: the --out file's folder")
    q.add_argument("--folds", metavar="FILE",
                   help="use a HyperKvasir official fold file (2_fold_split.csv / 5_fold_split.csv) as-is; "
                        "copies that straddle its folds (exact, near-duplicate, --uuid-map twins) are reported "
                        "and recorded in the split file, not moved")
    q.add_argument("--val-fold", type=int, default=1, metavar="N", help="with --folds: fold used as val")
    q.add_argument("--test-fold", type=int, default=None, metavar="N",
                   help="with --folds: fold used as test (default: none)")
    q.add_argument("--unlisted-train", action="store_true", help="with --folds: images not in the file go to train")
    q.set_defaults(func=_split)

    q = add_command(data, "merge", help="combine canonical files under one data root", examples=[
        "kvasir-ml data merge seg=data/kvasir-seg.coco.json v2=data/kvasir-v2.coco.json --out data/combined.coco.json"],
        description="Combine canonical files under one data root: each part's file_name entries get its "
                    "PREFIX/ (the part's folder under the common root).")
    q.add_argument("parts", nargs="+", metavar="PREFIX=FILE",
                   help="each file's file_name entries get PREFIX/ (its folder under the common data root)")
    q.add_argument("--out", required=True, metavar="FILE",
                   help="merged canonical JSON (an existing one is kept as a backup)")
    q.set_defaults(func=_merge)

    q = add_command(data, "synth", help="write the synthetic Kvasir-like default dataset", examples=[
        "kvasir-ml data synth --out data/synth --images 200 --seed 0"],
        description="Write the synthetic Kvasir-like dataset the tiny configs and tests default to "
                    "(deterministic per seed; no download).")
    q.add_argument("--out", required=True, metavar="DIR", help="output folder (images/ and annotations.coco.json)")
    q.add_argument("--images", type=count(1), default=64, metavar="N", help="number of images")
    add_hidden_alias(q, "--n", dest="images", type=count(1))
    q.add_argument("--seed", type=int, default=0, metavar="N", help="the same seed gives the same images")
    q.add_argument("--cooccurrence", choices=("default", "independent", "none"), default="default",
                   help="extra findings: class-specific (default), on any class (independent, the positive "
                        "control's data), or none (labels are exactly the class's: the negative control)")
    q.add_argument("--finding-contrast", type=float, default=1.0, metavar="C",
                   help="in (0, 1]: how visible the findings are (lower fades them: a harder task)")
    q.set_defaults(func=_synth)
