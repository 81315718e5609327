"""Small file helpers: atomic writes, backups, content hashes.

A user's annotation files and checkpoints are never overwritten in place: writers go
through ``atomic_write_*`` which writes a temporary file in the same folder and renames it
over the target, and ``backup_existing`` keeps the previous version next to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-serialisable object, independent of key order and whitespace."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def backup_existing(path: str | Path) -> Path | None:
    """Copy an existing file to ``<stem>.<UTC timestamp>.bak<suffix>`` beside it.

    Returns the backup path, or None when there was nothing to back up.
    """
    path = Path(path)
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    backup = path.with_name(f"{path.stem}.{stamp}.bak{path.suffix}")
    n = 1
    while backup.exists():
        backup = path.with_name(f"{path.stem}.{stamp}-{n}.bak{path.suffix}")
        n += 1
    shutil.copy2(path, backup)
    return backup


def atomic_write(path: str | Path, write: Callable[[Path], None], keep_backup: bool = False) -> Path | None:
    """Write ``path`` atomically by calling ``write(tmp_path)`` then renaming.

    Args:
        path: final file.
        write: callable that writes the whole content to the temporary path it is given.
        keep_backup: copy an existing ``path`` aside first (see ``backup_existing``).

    Returns:
        The backup path if one was made.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = backup_existing(path) if keep_backup else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return backup


def atomic_write_json(path: str | Path, obj: Any, keep_backup: bool = False, indent: int | None = 1) -> Path | None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=indent, ensure_ascii=False)
            fh.write("\n")

    return atomic_write(path, write, keep_backup=keep_backup)


def atomic_write_text(path: str | Path, text: str, keep_backup: bool = False) -> Path | None:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), keep_backup=keep_backup)


def read_json(path: str | Path) -> Any:
    """Read JSON, turning a parse error into a message that names the file and position."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason})") from None
