"""docs/labelstudio.md stays true: its commands parse, its hotkey table is the config's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from kvasir_ml.cli import build_parser
from kvasir_ml.labelstudio.config import BOX_HOTKEYS, INSET_HOTKEYS, LABEL_HOTKEYS

DOC = Path(__file__).resolve().parents[2] / "docs" / "labelstudio.md"


def _commands(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    joined = "\n".join(b.replace("\\\n", " ") for b in blocks)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line.strip())
        line = re.sub(r"\[[^\]]*\]", "", line)  # optional parts shown as [--flag value]
        if line.startswith("kvasir-ml "):
            out.append(line)
    return out


def test_every_documented_command_parses():
    commands = _commands(DOC.read_text(encoding="utf-8"))
    assert len(commands) >= 10
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])  # SystemExit on an unknown flag or command
        assert callable(args.func), command
    documented = {" ".join(c.split()[1:3]) if c.split()[1] in ("ls", "data") else c.split()[1] for c in commands}
    for needed in ("ls serve", "ls push", "ls pull", "ls backend", "ls connect", "loop", "data merge", "data index"):
        assert needed in documented, needed


def test_hotkey_table_matches_the_config():
    text = DOC.read_text(encoding="utf-8")
    for name, key in {**LABEL_HOTKEYS}.items():
        assert f"| `{key}` | {name} |" in text, (name, key)
    assert "`g` `b` `n`" in text and list(INSET_HOTKEYS.values()) == ["g", "b", "n"]
    for key in BOX_HOTKEYS.values():
        assert f"`{key}`" in text
