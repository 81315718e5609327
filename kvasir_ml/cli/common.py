"""What every command's help shares: the formatter, the example block and the options that
several commands take (so a flag means the same thing, with the same metavar, everywhere).

Metavars used across commands: FILE (a file to read or write), DIR (a folder), CONFIG (a
YAML config), CKPT (a checkpoint), KEY=VALUE (a config override), N (a count), DEVICE.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Sequence

# The one way to change a config value from the command line, named in every help that takes it.
OVERRIDES_HELP = ("config overrides after the options: dotted keys reach sections, values are YAML "
                  "(optim.lr=3e-4 tracking.mode=disabled 'data.fractions=[0.6,0.2,0.2]'); "
                  "`kvasir-ml config show CONFIG` lists every key")
TRACKING_MODES = ("offline", "online", "disabled")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples, and appends each option's default
    unless the help already says it (None, False and empty defaults are not shown)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or default == []
                or "default" in text.lower() or action.help == argparse.SUPPRESS):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def add_command(sub: argparse._SubParsersAction, name: str, *, help: str, examples: Sequence[str] = (),
                description: str | None = None) -> argparse.ArgumentParser:
    """A (sub)command whose ``--help`` shows its description, defaults and an example block.

    Args:
        sub: the parent's subparsers.
        name: the command word.
        help: one line for the parent's command list (also the description when none is given).
        examples: command lines (``kvasir-ml ...``; ``# comments`` allowed) shown under "examples:".
        description: a longer text for the command's own ``--help``.
    """
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    return sub.add_parser(name, help=help, description=_wrap(description or _sentence(help)), epilog=epilog,
                          formatter_class=HelpFormatter)


def add_group(sub: argparse._SubParsersAction, name: str, *, help: str, dest: str,
              description: str | None = None) -> argparse._SubParsersAction:
    """A command group (``data``, ``train``, ...): returns the subparsers its commands join."""
    parser = sub.add_parser(name, help=help, description=_wrap(description or _sentence(help)),
                            formatter_class=HelpFormatter)
    return parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")


def _wrap(text: str, width: int = 88) -> str:
    """Wrap each paragraph (the formatter keeps line breaks as they are, for the examples)."""
    return "\n\n".join(textwrap.fill(" ".join(par.split()), width) for par in text.split("\n\n"))


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def add_overrides(p: argparse.ArgumentParser, help: str = OVERRIDES_HELP) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=help)


def add_device(p: argparse.ArgumentParser, what: str = "where the models run") -> None:
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help=f"{what}: auto (a GPU if there is one), cpu, cuda or cuda:N")


def add_trust_checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load --detector even if it fails the check that opening it cannot run code "
                        "(ultralytics unpickles .pt files); only for files you trust")


def add_tracking_mode(p: argparse.ArgumentParser, choices: Sequence[str] = TRACKING_MODES, what: str = "") -> None:
    """``--tracking-mode``: the command-line spelling of the configs' ``tracking.mode`` for
    commands that take no config file (flags for ``tracking.*`` keys are ``--tracking-<key>``)."""
    p.add_argument("--tracking-mode", choices=choices, default="offline", metavar="MODE",
                   help=f"W&B mode{what}, as tracking.mode in the training configs: "
                   + ", ".join(_MODE_HELP[c] for c in choices))


def add_hidden_alias(p: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """An old spelling that keeps working but is not shown (nor used in the docs: a test checks)."""
    p.add_argument(flag, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


_MODE_HELP = {"offline": "offline (run files on disk; `wandb sync` uploads them later)",
              "online": "online (needs WANDB_API_KEY in the environment)",
              "disabled": "disabled (nothing written)"}


def count(minimum: int = 1):
    """An argparse type for counts: an int of at least ``minimum`` (the error names the flag)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "count"
    return parse
