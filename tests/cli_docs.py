"""Helpers for the CLI contract tests: the command tree of ``build_parser()`` and the
``kvasir-ml ...`` command lines written in the docs and in the commands' own examples."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", flags=re.S | re.M)
_SHELL_OPERATORS = {">", ">>", "2>", "|", "&&", "||", ";", "&"}
_OPTIONAL = re.compile(r"\[(--[^\]]*)\]")  # `[--base FILE]`: an optional part, parsed like the rest


def subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[str, argparse.ArgumentParser]:
    """Every runnable command, by its words (``"data split"``), depth first."""
    sub = subparsers(parser)
    if sub is None:
        return {" ".join(path): parser}
    out: dict[str, argparse.ArgumentParser] = {}
    for name, child in sub.choices.items():
        out.update(leaf_parsers(child, (*path, name)))
    return out


def leaf_of(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[str, argparse.ArgumentParser]:
    """The command words and parser an argv (without ``kvasir-ml``) runs."""
    words: list[str] = []
    for token in argv:
        sub = subparsers(parser)
        if sub is None:
            break
        if token in sub.choices:
            words.append(token)
            parser = sub.choices[token]
    return " ".join(words), parser


def command_lines(text: str) -> list[list[str]]:
    """argv (after ``kvasir-ml``) of every ``kvasir-ml ...`` / ``python -m kvasir_ml ...`` line in
    ``text``; backslash continuations joined, ``# comments`` dropped, ``[--optional parts]`` kept."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = _OPTIONAL.sub(r"\1", line.strip())
        if not (line.startswith("kvasir-ml ") or " -m kvasir_ml " in line):
            continue
        argv = shlex.split(line, comments=True)
        start = argv.index("kvasir-ml") if "kvasir-ml" in argv else argv.index("kvasir_ml")
        argv = argv[start + 1:]
        shell = [i for i, t in enumerate(argv) if t in _SHELL_OPERATORS]  # `> out.json`, `| jq`, `&& ...`
        out.append(argv[:shell[0]] if shell else argv)
    return out


def documented_commands(paths=DOCS) -> list[tuple[str, list[str]]]:
    """(file name, argv) of every command line inside the fenced code blocks of ``paths``."""
    found = []
    for path in paths:
        for block in _FENCE.findall(path.read_text(encoding="utf-8")):
            found += [(path.name, argv) for argv in command_lines(block)]
    return found


def visible_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings a user should write: those shown in ``--help`` (hidden aliases left out)."""
    return {s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


def unknown_flags(root: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--flags`` in argv that are not spelled out in full as a visible option of the command
    (argparse would accept an abbreviation or a hidden alias; the docs should not use them)."""
    _, leaf = leaf_of(root, argv)
    known = visible_flags(leaf) | visible_flags(root)
    return [t.split("=", 1)[0] for t in argv if t.startswith("--") and t.split("=", 1)[0] not in known]
