"""The command line reads like a manual and the docs stay true to it: every command line in
README.md and docs/*.md parses, every command's ``--help`` has examples (which parse too)
and defaults, every option has help text, and a flag means the same thing in every command.
All in-process through ``build_parser()`` (one subprocess for the installed entry point)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
from cli_docs import REPO, command_lines, documented_commands, leaf_of, leaf_parsers, unknown_flags

from kvasir_ml.cli import build_parser, main
from kvasir_ml.cli.common import HelpFormatter

# Commands the docs and users rely on; a new command joins the checks below automatically.
EXPECTED_COMMANDS = {
    "data index", "data stats", "data split", "data merge", "data synth", "train classifier", "train detector",
    "predict", "ls config", "ls serve", "ls push", "ls backend", "ls connect", "ls pull", "ls convert", "loop",
    "experiment compare", "runs compare", "config show", "config sync", "quickstart",
}
# Flags whose metavar may differ between commands (a file here, a folder there), and flags
# whose default is the command's own (required here, optional there, or a per-command size).
METAVAR_VARIANTS = {"--out": {"FILE", "DIR"}}
OWN_DEFAULTS = {"--out", "--data-root", "--config", "--images", "--port", "--top"}  # --top: how many depends on the command


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


@pytest.fixture(scope="module")
def leaves(parser) -> dict[str, argparse.ArgumentParser]:
    return leaf_parsers(parser)


def _parses(parser, argv: list[str], where: str, capsys) -> argparse.Namespace:
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `kvasir-ml {' '.join(argv)}` does not parse: {capsys.readouterr().err.strip()}")
    assert callable(args.func), where
    return args


def test_every_command_line_in_the_docs_parses_with_flags_spelled_out(parser, capsys):
    commands = documented_commands()
    assert len(commands) >= 40, "the extractor found too few commands: did the code-block format change?"
    for where, argv in commands:
        _parses(parser, argv, where, capsys)
        assert not unknown_flags(parser, argv), (
            f"{where}: `kvasir-ml {' '.join(argv)}` uses {unknown_flags(parser, argv)}: abbreviated, or an old "
            "spelling kept only as a hidden alias; write the flag as `--help` shows it")


def test_every_command_has_help_with_examples_that_parse(parser, leaves, capsys):
    assert EXPECTED_COMMANDS <= set(leaves)
    for name, leaf in leaves.items():
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([*name.split(), "--help"])
        text = capsys.readouterr().out
        assert exit_info.value.code == 0, name
        assert "examples:" in text and leaf.description, f"`kvasir-ml {name} --help` has no description or example"
        examples = command_lines(leaf.epilog)
        assert examples, f"{name}: the epilog has no `kvasir-ml ...` line"
        for argv in examples:
            assert leaf_of(parser, argv)[0] in leaves, argv
            _parses(parser, argv, f"example of {name}", capsys)
            assert not unknown_flags(parser, argv), (name, argv)
        assert any(leaf_of(parser, argv)[0] == name for argv in examples), f"{name}: no example runs {name}"
    for argv in command_lines(parser.epilog):  # the top-level examples
        _parses(parser, argv, "kvasir-ml --help", capsys)


def test_every_option_has_help_and_shows_its_default(leaves):
    for name, leaf in leaves.items():
        formatter = leaf._get_formatter()
        assert isinstance(formatter, HelpFormatter), f"{name}: build it with cli.common.add_command"
        for action in leaf._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and len(action.help) > 8, f"{label}: no help text"
            if action.option_strings and action.nargs != 0:
                assert action.metavar or action.choices, f"{label}: give it a metavar (FILE, DIR, N, ...)"
            shown = action.default not in (None, False, []) or action.default == 0
            if action.default is not False and shown and action.default is not argparse.SUPPRESS:
                assert "default" in formatter._get_help_string(action), f"{label}: default not shown"


def test_a_flag_means_the_same_in_every_command(leaves):
    seen: dict[str, dict[str, set]] = {}
    for name, leaf in leaves.items():
        for action in leaf._actions:
            if action.help == argparse.SUPPRESS or not action.option_strings or action.nargs == 0:
                continue
            for flag in action.option_strings:
                entry = seen.setdefault(flag, {"metavar": set(), "default": set(), "type": set(), "where": set()})
                entry["metavar"].add(str(action.metavar or action.choices))
                entry["default"].add(repr(action.default))
                entry["type"].add(getattr(action.type, "__name__", str(action.type)))
                entry["where"].add(name)
    shared = {flag: e for flag, e in seen.items() if len(e["where"]) > 1}
    assert {"--device", "--classifier", "--detector", "--data-root", "--project", "--out"} <= set(shared)
    for flag, entry in shared.items():
        assert entry["metavar"] <= METAVAR_VARIANTS.get(flag, set()) or len(entry["metavar"]) == 1, (flag, entry)
        assert len(entry["type"]) == 1, (flag, entry)
        if flag not in OWN_DEFAULTS:
            assert len(entry["default"]) == 1, (flag, entry)


def test_old_spellings_still_work_and_giving_both_checkpoint_flags_is_impossible(parser, capsys):
    assert parser.parse_args(["data", "synth", "--out", "x", "--n", "8"]).images == 8
    assert parser.parse_args(["data", "synth", "--out", "x"]).images == 64
    assert parser.parse_args(["quickstart", "--tracking-mode", "disabled"]).tracking_mode == "disabled"
    assert parser.parse_args(["runs", "compare", "r", "--tracking-mode", "online"]).tracking_mode == "online"
    with pytest.raises(SystemExit):  # the old alias of --classifier is gone: no silent preference
        parser.parse_args(["predict", "--checkpoint", "a.pt", "--classifier", "b.pt", "x.jpg"])
    assert "--checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["quickstart", "--images", "0"])
    assert "--images: must be at least 1" in capsys.readouterr().err


def test_expected_bad_input_is_one_line_naming_it(tmp_path, capsys):
    assert main(["config", "sync", "--folder", str(tmp_path / "absent"), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --folder") and "absent" in err and "Traceback" not in err
    assert main(["predict", str(tmp_path / "x.jpg")]) == 2
    assert capsys.readouterr().err.strip() == "error: give --classifier and/or --detector"
    # `--kind K key=value`: the override is not taken for a config file
    assert main(["config", "show", "--kind", "experiment", "seeds=[4]"]) == 0
    assert "seeds:" in capsys.readouterr().out


def test_kvasir_ml_help_as_a_user_runs_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "kvasir_ml", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "endoscopy" in proc.stdout and "examples:" in proc.stdout
    assert "thin layer" not in proc.stdout  # the developer note stays in the module docstring
    for group in ("data", "train", "predict", "ls", "loop", "experiment", "runs", "config", "quickstart"):
        assert f"\n    {group} " in proc.stdout, group
