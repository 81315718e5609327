"""The image folder a canonical file's ``file_name`` entries are relative to, remembered in the file.

``kvasir-ml data index ROOT --out FILE`` records ROOT in ``info["image_root"]``, relative to
FILE's folder where one path leads from it to ROOT (absolute otherwise: another drive), so
``data split FILE``, training and ``kvasir-ml eval`` find the images without ``--root`` /
``data.root``. An explicit root always wins; a file without the record (older files,
synthetic data, merges) falls back to its own folder, as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kvasir_ml.io import read_json

ROOT_KEY = "image_root"


def remember_image_root(info: dict[str, Any], root: str | Path, canonical: str | Path) -> str:
    """Store ``root`` in a canonical file's ``info`` (relative to ``canonical``'s folder if possible).

    Returns:
        The stored value.
    """
    root_abs, folder = Path(root).resolve(), Path(canonical).resolve().parent
    try:
        value = Path(os.path.relpath(root_abs, folder)).as_posix()
    except ValueError:  # Windows: another drive, no relative path
        value = root_abs.as_posix()
    info[ROOT_KEY] = value
    return value


def image_root(canonical: str | Path, given: str | Path | None = None, info: dict[str, Any] | None = None) -> Path:
    """The folder ``canonical``'s file names are relative to.

    Args:
        canonical: the canonical file.
        given: an explicit root (``--root``, ``data.root``): returned as it is.
        info: the file's ``info`` if already loaded (else the file is read).

    Returns:
        ``given``, else the remembered root (resolved against the file's folder), else the file's folder.
    """
    if given:
        return Path(given)
    canonical = Path(canonical)
    if info is None:
        raw = read_json(canonical)
        info = raw.get("info") if isinstance(raw, dict) and isinstance(raw.get("info"), dict) else {}
    stored = (info or {}).get(ROOT_KEY)
    if isinstance(stored, str) and stored:
        return canonical.parent / stored if not Path(stored).is_absolute() else Path(stored)
    return canonical.parent
