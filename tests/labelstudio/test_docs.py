"""docs/labelstudio.md stays true: it shows every step, its hotkey table is the config's."""

from __future__ import annotations

from pathlib import Path

from cli_docs import documented_commands, leaf_of

from kvasir_ml.cli import build_parser
from kvasir_ml.labelstudio.labeling_config import hotkeys
from kvasir_ml.taxonomy import load_taxonomy

DOC = Path(__file__).resolve().parents[2] / "docs" / "labelstudio.md"


def test_the_guide_shows_every_step_of_the_round_trip():
    """The guide's commands parse like every documented command (tests/test_cli.py); here: it
    shows each step of the round trip, not only some."""
    parser = build_parser()
    documented = {leaf_of(parser, argv)[0] for _, argv in documented_commands([DOC])}
    for needed in ("ls serve", "ls push", "ls pull", "ls convert", "ls backend", "ls connect", "loop",
                   "predict", "data merge", "data index"):
        assert needed in documented, needed


def test_hotkey_table_matches_the_config():
    text = DOC.read_text(encoding="utf-8")
    keys = hotkeys(load_taxonomy())
    for name, key in keys["labels"].items():
        assert f"| `{key}` | {name} |" in text, (name, key)
    assert "`g` `b` `n`" in text and list(keys["inset"].values()) == ["g", "b", "n"]
    for key in keys["boxes"].values():
        assert f"`{key}`" in text
