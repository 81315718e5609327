"""``kvasir-ml predict [--classifier CKPT] [--detector CKPT] IMAGE... [--out FILE.json]``."""

from __future__ import annotations

import argparse
import json
import sys

# Exit status when some images failed (their entries carry "error"); the others are written.
EXIT_SOME_FAILED = 1


def _predict(args: argparse.Namespace) -> int:
    from kvasir_ml.io import atomic_write_json
    from kvasir_ml.predict import count_failures, predict_images

    classifier = args.classifier or args.checkpoint
    if not classifier and not args.detector:
        raise ValueError("give --classifier (or --checkpoint) and/or --detector")
    results = predict_images(args.images, classifier_ckpt=classifier, detector_ckpt=args.detector,
                             device=args.device, trust_detector=args.trust_checkpoint)
    from kvasir_ml.labelstudio.sync import model_version_for

    version = model_version_for(classifier, args.detector)  # `ls push` names these as it would the checkpoints
    for entry in results:
        entry["model_version"] = version
    if args.out:
        atomic_write_json(args.out, results, keep_backup=True)
        print(f"wrote {len(results)} predictions to {args.out}")
    else:
        json.dump(results, sys.stdout, indent=1)
        print()
    failed = count_failures(results)
    if failed:
        print(f"predict: {failed} of {len(results)} images failed (entries with \"error\"); "
              f"{len(results) - failed} predicted", file=sys.stderr)
        for entry in [r for r in results if "error" in r][:10]:
            print(f"  {entry['image']}: {entry['error']}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="labels, boxes and inset state for images, as JSON",
                       description="Exit status: 0 all images predicted, 1 some failed (the others are "
                                   "written; failed ones carry \"error\"), 2 bad arguments or checkpoint.")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--classifier", help="classifier checkpoint (.pt)")
    p.add_argument("--checkpoint", help="alias of --classifier")
    p.add_argument("--detector", help="detector checkpoint (ultralytics .pt)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load --detector even if it fails the check that it cannot run code when opened "
                        "(ultralytics unpickles .pt files); only for files you trust")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--out", help="write JSON here instead of stdout")
    p.set_defaults(func=_predict)
