"""Test helper: near-duplicates planted in a copy of the synthetic dataset (split and audit tests)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.io import sha256_file


def add_copies(ds: CanonicalDataset, root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A byte-identical copy of ``ds``'s first image and a re-encoded copy (JPEG quality 60) of its
    second, written under ``root/images`` and added to ``ds``; returns (first, second)."""
    first, second = ds.images[0], ds.images[1]
    shutil.copyfile(root / first["file_name"], root / "images" / "copy-exact.jpg")
    Image.open(root / second["file_name"]).save(root / "images" / "copy-reencoded.jpg", quality=60)
    for name, twin in (("copy-exact.jpg", first), ("copy-reencoded.jpg", second)):
        ds.add_image(f"images/{name}", twin["width"], twin["height"], twin["labels"], twin["source"],
                     twin["source_class"], content_sha256=sha256_file(root / "images" / name))
    return first, second
