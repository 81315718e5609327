"""Small file helpers: atomic writes, backups, content hashes, safe relative paths.

A user's annotation files and checkpoints are never overwritten in place: writers go
through ``atomic_write_*`` which writes a temporary file in the same folder and renames it
over the target, and ``backup_existing`` keeps the previous version next to it. A full disk
surfaces as ``DiskFullError`` ("no space left on <folder>") with the target untouched.
Every JSON and YAML the project reads goes through ``loads_json``/``read_json`` and
``loads_yaml``/``read_yaml``: a key given twice is a ``DuplicateKeyError``, never a silent
"the last one wins".
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

import yaml

TEMP_SUFFIX = ".tmp"  # atomic_write's temporary files: .<name>.<random>.tmp beside the target
# errno values that mean "the disk (or the user's quota) is full".
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(OSError):
    """A write failed because the file system (or quota) is full; the message names the folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        folder = self.path.parent
        try:
            free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
        except OSError:
            free = "free space unknown"
        super().__init__(errno.ENOSPC, f"no space left on {folder} while writing {self.path.name} ({free}); "
                                       "the previous version of the file, if any, is unchanged")

    def __str__(self) -> str:
        return self.strerror or ""


class UnsafePathError(ValueError):
    """A path that should be relative to a data root is absolute or escapes it."""


def safe_relative_path(raw: Any, what: str = "path") -> str:
    """Normalise a relative POSIX path and refuse anything that escapes its root.

    Returns:
        The normalised path (``a/./b`` -> ``a/b``).

    Raises:
        UnsafePathError: not a string, empty, NUL byte, absolute (``/x``, ``C:\\x``, ``\\\\host``)
            or escaping with ``..``.
    """
    if not isinstance(raw, str):
        raise UnsafePathError(f"{what} {raw!r} is not a string")
    if not raw or "\x00" in raw:
        raise UnsafePathError(f"{what} {raw!r} is empty or contains a NUL byte")
    text = raw.replace("\\", "/")
    if text.startswith("/") or PurePosixPath(text).is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise UnsafePathError(f"{what} {raw!r} is absolute; expected a path relative to the data root")
    norm = posixpath.normpath(text)
    if norm in (".", "..") or norm.startswith("../"):
        raise UnsafePathError(f"{what} {raw!r} escapes the data root")
    return norm


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
    try:
        shutil.copy2(path, backup)
    except BaseException:
        backup.unlink(missing_ok=True)  # no half-written backup left behind (e.g. disk full)
        raise
    return backup


def atomic_write(path: str | Path, write: Callable[[Path], object], keep_backup: bool = False) -> Path | None:
    """Write ``path`` atomically by calling ``write(tmp_path)`` then renaming.

    Args:
        path: final file.
        write: callable that writes the whole content to the temporary path it is given.
        keep_backup: copy an existing ``path`` aside first (see ``backup_existing``).

    Returns:
        The backup path if one was made.

    Raises:
        DiskFullError: the disk or quota filled up (the temporary file is removed and an
            existing ``path`` is unchanged). IsADirectoryError: ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{path} is a folder; give a file name", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backup = backup_existing(path) if keep_backup else None
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            raise DiskFullError(path) from None
        raise
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if _is_disk_full(exc):
            raise DiskFullError(path) from None
        raise
    return backup


def _is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC/EDQUOT anywhere in the exception chain (torch wraps writer errors in RuntimeError)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def orphaned_temp_files(folder: str | Path) -> list[Path]:
    """Temporary files ``atomic_write`` left in ``folder`` when its process was killed mid-write."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file())


def set_aside(folder: str | Path, names: Iterable[str]) -> Path | None:
    """Move the entries ``names`` of ``folder`` (those that exist) into ``folder/attempt-<UTC>/``.

    Used to restart a run that failed before its first checkpoint: nothing is deleted, and
    nothing from the failed attempt (split, resolved config) leaks into the new one.

    Returns:
        The new sub-folder, or None when none of ``names`` existed.
    """
    folder = Path(folder)
    items = [folder / n for n in sorted(set(names)) if (folder / n).exists()]
    if not items:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = folder / f"attempt-{stamp}"
    n = 1
    while target.exists():
        target = folder / f"attempt-{stamp}-{n}"
        n += 1
    target.mkdir()
    for item in items:
        os.replace(item, target / item.name)
    return target


def atomic_write_json(path: str | Path, obj: Any, keep_backup: bool = False, indent: int | None = 1) -> Path | None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=indent, ensure_ascii=False)
            fh.write("\n")

    return atomic_write(path, write, keep_backup=keep_backup)


def atomic_write_text(path: str | Path, text: str, keep_backup: bool = False) -> Path | None:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), keep_backup=keep_backup)


def read_text_utf8(path: str | Path) -> str:
    """A text file's content (a UTF-8 BOM dropped), with decoding errors that name the file.

    Raises:
        ValueError: not UTF-8 (names the file, the line and the offending byte).
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}: {exc.reason}); "
                         "save it as UTF-8") from None


class DuplicateKeyError(ValueError):
    """A JSON object or YAML mapping names the same key twice (the parsers keep only the last)."""


def _json_object_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"duplicate key {key!r} in one object (a JSON reader keeps only the last; "
                                    "merge or rename the entries)")
        out[key] = value
    return out


def loads_json(text: str, source: str) -> Any:
    """Parse JSON text strictly: a duplicate key in any object is an error, not a silent overwrite.

    Args:
        text: the JSON document.
        source: what it is (a file name, "export 3 of project 7"), named in every error.

    Raises:
        ValueError: malformed JSON (with line and column) or ``DuplicateKeyError``, naming ``source``.
    """
    try:
        return json.loads(text, object_pairs_hook=_json_object_no_duplicates)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except DuplicateKeyError as exc:
        raise DuplicateKeyError(f"{source}: {exc}") from None


def read_json(path: str | Path) -> Any:
    """Read JSON (as ``read_text_utf8``: a BOM is dropped) with ``loads_json``: a parse error or
    a duplicate key becomes a message that names the file (and the position or the key)."""
    path = Path(path)
    return loads_json(read_text_utf8(path), str(path))


class StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping naming the same key twice.

    PyYAML keeps the last of two equal keys, so a config with ``optim:`` twice silently loses
    the first section. Keys brought in by a merge (``<<: *base``) may still be overridden.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeLoader raises its own error below
                    continue
                if first is not key_node:
                    raise DuplicateKeyError(
                        f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first on line "
                        f"{first.start_mark.line + 1}); YAML keeps only the last, so the first would be silently "
                        "lost: merge the two or remove one")
        return super().construct_mapping(node, deep=deep)


def loads_yaml(text: str, source: str) -> Any:
    """Parse YAML text with ``StrictSafeLoader`` (no Python objects, no duplicate keys).

    Raises:
        ValueError: invalid YAML or a duplicate key, naming ``source`` and the line.
    """
    try:
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 — a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise DuplicateKeyError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{source} is not valid YAML: {exc}") from None


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content via ``loads_yaml`` (UTF-8, BOM dropped); errors name the file."""
    path = Path(path)
    return loads_yaml(read_text_utf8(path), str(path))
