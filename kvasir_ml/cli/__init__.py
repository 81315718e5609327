"""Command-line interface: a thin layer over the library.

Each command group lives in its own module exposing ``register(subparsers)``; commands
parse arguments, call one library function and print where the results are. Heavy
imports (torch, ultralytics, label-studio-sdk, wandb) happen inside the handlers, so
``kvasir-ml --help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

# Command-group modules, in help order. Each defines register(subparsers).
_GROUPS = ("data", "train", "predict", "labelstudio", "experiment", "runs", "config", "quickstart")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kvasir-ml", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _GROUPS:
        try:
            module = importlib.import_module(f"kvasir_ml.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"kvasir_ml.cli.{name}":
                continue  # group not built yet
            raise
        module.register(sub)
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
