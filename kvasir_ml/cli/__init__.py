"""Command-line interface.

Developer note: a thin layer over the library. Each command group lives in its own module
exposing ``register(subparsers)``; commands parse arguments, call one library function and
print where the results are. Heavy imports (torch, ultralytics, label-studio-sdk, wandb)
happen inside the handlers, so ``kvasir-ml --help`` stays fast. ``common.py`` holds the help
formatter and the options several commands share; ``tests/test_cli.py`` checks that every
command has an example, every option a help text, and every command line in the docs parses.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from kvasir_ml.cli.common import HelpFormatter

# Command-group modules, in help order. Each defines register(subparsers).
_GROUPS = ("data", "train", "eval", "predict", "labelstudio", "verify", "review", "experiment", "runs", "config", "quickstart",
           "video")

DESCRIPTION = """\
Train and compare image classifiers and polyp detectors for GI endoscopy (the Kvasir family:
Kvasir v2, HyperKvasir, Kvasir-SEG), and move annotations to and from Label Studio.

Multi-label ResNet (an image can be a polyp, dyed and lifted at once) against the usual
single-label baseline on one frozen split, with the scope's position-map inset kept, masked
or fed to its own branch; YOLO box detection scored with pycocotools; every run logged to
Weights & Biases offline. Nothing is downloaded at run time."""

EPILOG = """\
examples:
  kvasir-ml quickstart                        # everything on synthetic data, CPU, ~3 min
  kvasir-ml data index kvasir-v2 ROOT --out data/kvasir-v2.coco.json
  kvasir-ml train classifier --config configs/classifier_multilabel_tiny.yaml --out runs/ml-tiny \\
      data.canonical=data/kvasir-v2.coco.json data.root=ROOT optim.epochs=3
  kvasir-ml predict --classifier runs/ml-tiny/checkpoints/best.pt frame.jpg
  kvasir-ml config show classifier_multilabel_tiny.yaml      # every config key, documented

Config overrides are KEY=VALUE words after the options (dotted keys for sections, e.g.
tracking.mode=disabled). Label Studio reads its API key from $LABEL_STUDIO_API_KEY only.
`kvasir-ml COMMAND --help` (e.g. `kvasir-ml data split --help`) shows a command's options,
defaults and examples. Exit status: 0 done, 1 done with problems the command reports, 2 bad
input (the message names the file or argument), 130 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree (handlers import their libraries only when they run)."""
    parser = argparse.ArgumentParser(prog="kvasir-ml", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and a traceback instead of a one-line error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _GROUPS:
        importlib.import_module(f"kvasir_ml.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:
        # One INFO line per HTTP request (label-studio-sdk's httpx) drowns the summaries.
        for noisy in ("httpx", "httpcore", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        # Library errors carry a message that names the file and the problem; OSErrors
        # (a full disk, --out naming a file where a folder is needed) name the path.
        if args.verbose:
            raise
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return 2


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and not str(exc).startswith("no space"):
        return f"no space left on {exc.filename or 'the device'} ({exc})"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
