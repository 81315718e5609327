"""``kvasir-ml predict [--classifier CKPT] [--detector CKPT] IMAGE|FOLDER... [--out FILE[.jsonl]]``."""

from __future__ import annotations

import argparse
import json
import sys

from kvasir_ml.cli.common import add_command, add_device, add_trust_checkpoint, count

# Exit status when some images failed (their entries carry "error"); the others are written.
EXIT_SOME_FAILED = 1


def _predict(args: argparse.Namespace) -> int:
    from kvasir_ml.io import atomic_write_json
    from kvasir_ml.labelstudio.sync import model_version_for
    from kvasir_ml.inference.combined import Predictor, count_failures
    from kvasir_ml.inference.stream import IMAGE_SUFFIXES, list_images
    from kvasir_ml.results_schema import dump_prediction

    classifier = args.classifier
    if not classifier and not args.detector:
        raise ValueError("give --classifier and/or --detector")
    images = list_images(args.images)
    if not images:
        raise ValueError(f"no images in {', '.join(args.images)} (looked for {', '.join(IMAGE_SUFFIXES)})")
    predictor = Predictor(classifier, args.detector, device=args.device, trust_detector=args.trust_checkpoint)
    version = model_version_for(classifier, args.detector)  # `ls push` names these as it would the checkpoints
    if args.out and args.out.endswith(".jsonl"):
        return _stream(args, predictor, images, version)
    results = [dump_prediction({**entry, "model_version": version}) for entry in predictor(images)]
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


def _stream(args: argparse.Namespace, predictor, images: list, version: str) -> int:
    from kvasir_ml.inference.stream import predict_to_jsonl

    rep = predict_to_jsonl(predictor, images, args.out, model_version=version, workers=args.workers,
                           batch_images=args.batch, progress=not args.no_progress)
    print(f"wrote {rep.n_written} predictions to {args.out} ({rep.images_per_s:.1f} img/s)"
          + (f"; {rep.n_already} already there (resumed)" if rep.n_already else ""))
    if rep.n_failed:
        print(f"predict: {rep.n_failed} of {rep.n_written} images failed (lines with \"error\")", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "predict", help="labels, boxes and inset state for images, as JSON", examples=[
        "kvasir-ml predict --classifier runs/ml-tiny/checkpoints/best.pt image1.jpg image2.jpg",
        "kvasir-ml predict --classifier runs/ml-tiny/checkpoints/best.pt \\",
        "    --detector runs/det-tiny/checkpoints/best.pt frame.jpg --out predictions.json",
        "kvasir-ml predict --classifier runs/ml-tiny/checkpoints/best.pt frames/ --out predictions.jsonl",
        "    # JSON Lines, written as it goes; run it again after a stop to resume"],
        description="Labels (every label's score and those above the val-tuned thresholds), the source class, "
                    "the inset state and, with --detector, boxes: one JSON entry per image, stamped with the "
                    "model_version `kvasir-ml ls push` uses for the same checkpoints.\n\n"
                    "Exit status: 0 all images predicted, 1 some failed (the others are written; failed "
                    "ones carry \"error\"), 2 bad arguments or checkpoint.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders (searched recursively)")
    p.add_argument("--classifier", metavar="CKPT", help="classifier checkpoint (RUN_DIR/checkpoints/best.pt)")
    p.add_argument("--detector", metavar="CKPT", help="detector checkpoint (RUN_DIR/checkpoints/best.pt)")
    add_trust_checkpoint(p)
    add_device(p)
    p.add_argument("--out", metavar="FILE", help="write JSON here instead of stdout (an existing file is backed up); "
                   "a .jsonl file gets one line per image, written as it goes, with a progress bar: running the "
                   "command again resumes, skipping the images already in it")
    p.add_argument("--workers", type=count(0), default=None, metavar="N",
                   help="with .jsonl: processes decoding frames while the models run (default: cores - 1, 1 to 8)")
    p.add_argument("--batch", type=count(1), default=32, metavar="N", help="with .jsonl: images per model batch")
    p.add_argument("--no-progress", action="store_true", help="with .jsonl: no progress bar")
    p.set_defaults(func=_predict)
