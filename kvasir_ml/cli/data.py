"""``kvasir-ml data {index,stats,split,merge,synth}``: datasets -> canonical files, stats, splits."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _index(args: argparse.Namespace) -> int:
    from kvasir_ml.data.sources import INDEXERS

    indexer = INDEXERS[args.source]
    result = indexer(args.root, workers=args.workers, strict=args.strict)
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


def _split(args: argparse.Namespace) -> int:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.near_duplicates import near_duplicate_groups
    from kvasir_ml.data.splits import kvasirseg_hyperkvasir_groups, make_splits, split_from_hyperkvasir_folds

    ds = load_canonical(args.file)
    if args.folds:
        split = split_from_hyperkvasir_folds(ds, args.folds, args.val_fold, args.test_fold,
                                             unlisted="train" if args.unlisted_train else "error")
    else:
        groups = kvasirseg_hyperkvasir_groups(ds, args.uuid_map) if args.uuid_map else None
        near = None
        if args.near_duplicate_max_distance >= 0:
            root = Path(args.root) if args.root else Path(args.file).parent
            near = near_duplicate_groups([img["file_name"] for img in ds.images], root,
                                         args.near_duplicate_max_distance)
            print(f"near-duplicates: {near.info['n_groups']} groups of {near.info['n_images_grouped']} images kept "
                  f"together (perceptual hash, <= {args.near_duplicate_max_distance} bits)")
        split = make_splits(ds, args.seed, tuple(args.fractions), groups=groups, near_duplicates=near)
    split.save(args.out)
    print(f"wrote {args.out}  sha256 {split.sha256}")
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

    out = synthesize(args.out, n=args.n, seed=args.seed, cooccurrence=args.cooccurrence)
    print(f"wrote {args.n} synthetic images under {args.out} and the canonical file {out}")
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
    from kvasir_ml.data.near_duplicates import DEFAULT_MAX_DISTANCE as DEFAULT_NEAR_DUP_BITS  # numpy + PIL only
    p = sub.add_parser("data", help="index datasets, statistics, splits, synthetic data")
    data = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    q = data.add_parser("index", help="index a dataset folder into a canonical COCO file")
    q.add_argument("source", choices=["kvasir-v2", "hyperkvasir", "kvasir-seg"], help="dataset layout")
    q.add_argument("root", help="dataset folder (file_name entries are relative to it)")
    q.add_argument("--out", required=True, help="canonical JSON to write (an existing one is backed up)")
    q.add_argument("--strict", action="store_true", help="fail on any skipped or converted input")
    q.add_argument("--workers", type=int, default=None, help="decoding processes (default: up to 2)")
    q.add_argument("--show", type=int, default=5, help="examples printed per problem kind")
    q.set_defaults(func=_index)

    q = data.add_parser("stats", help="label, box, size and inset statistics of a canonical file")
    q.add_argument("file", help="canonical JSON")
    q.add_argument("--json", action="store_true", help="print JSON instead of tables")
    q.add_argument("--top", type=int, default=5, help="most common image sizes to list")
    q.set_defaults(func=_stats)

    q = data.add_parser("split", help="deterministic grouped, stratified train/val/test split")
    q.add_argument("file", help="canonical JSON")
    q.add_argument("--out", required=True, help="split JSON to write")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--fractions", type=float, nargs=3, default=[0.7, 0.15, 0.15], metavar=("TRAIN", "VAL", "TEST"))
    q.add_argument("--uuid-map", help="kvasirseg_to_hyperkvasir_uuid.csv: keep Kvasir-SEG/HyperKvasir twins together")
    q.add_argument("--root", help="folder the file names are relative to (perceptual hashes); default: the file's folder")
    q.add_argument("--near-duplicate-max-distance", type=int, default=DEFAULT_NEAR_DUP_BITS, metavar="BITS",
                   help=f"keep images whose perceptual hashes differ in <= BITS of 64 together (default "
                        f"{DEFAULT_NEAR_DUP_BITS}, measured on Kvasir-SEG; -1: exact duplicates only)")
    q.add_argument("--folds", help="use a HyperKvasir official fold file (2_fold_split.csv / 5_fold_split.csv) as-is")
    q.add_argument("--val-fold", type=int, default=1, help="with --folds: fold used as val")
    q.add_argument("--test-fold", type=int, default=None, help="with --folds: fold used as test (default none)")
    q.add_argument("--unlisted-train", action="store_true", help="with --folds: images not in the file go to train")
    q.set_defaults(func=_split)

    q = data.add_parser("merge", help="combine canonical files under one data root")
    q.add_argument("parts", nargs="+", metavar="PREFIX=FILE",
                   help="each file's file_name entries get PREFIX/ (its folder under the common data root)")
    q.add_argument("--out", required=True, help="merged canonical JSON")
    q.set_defaults(func=_merge)

    q = data.add_parser("synth", help="write the synthetic Kvasir-like default dataset")
    q.add_argument("--out", required=True, help="output folder (images/ and annotations.coco.json)")
    q.add_argument("--n", type=int, default=64, help="number of images")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--cooccurrence", choices=("default", "independent", "none"), default="default",
                   help="extra findings: class-specific (default), on any class (independent), none")
    q.set_defaults(func=_synth)
