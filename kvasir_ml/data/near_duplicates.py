"""Near-duplicate images by perceptual hash, so that copies of one frame never straddle splits.

Exact copies share a ``content_sha256``; re-encoded, re-cropped or re-exported copies of a
frame do not. Kvasir-SEG has such copies: the same frame once with the green position-map
panel and once with it blacked out, at a slightly different crop and scale; consecutive
video frames a second apart. They are found here by a perceptual hash (``imagehash.phash``,
a 64-bit DCT hash) of the frame's *content*, not of the whole file:

1. decode small (JPEG draft mode, >= 160 px) in greyscale (``images.load_rgb``);
2. find the content box, the rows and columns where most pixels are lit (>= 35% above
   grey level 25), which drops the black border and the burnt-in text beside it: two crops
   of one frame then line up;
3. hash the middle of the content box (``CONTENT_REGION``: x 30-85%, y 15-70%), away from
   the inset panel (bottom left), the text (left) and the octagon's corners, which differ
   between copies (panel green vs black) or between unrelated frames (same layout);
4. images whose hashes differ in at most ``DEFAULT_MAX_DISTANCE`` of 64 bits are tied;
   ties are merged transitively (union-find) into groups.

The threshold was measured on the 1000 real Kvasir-SEG images (docs/near_duplicates.md):
of the 18 same-frame pairs an ORB + RANSAC check found among all 499,500 pairs, 17 are
within 12 bits; 12 unrelated pairs are within 12 bits as well (merging them costs a little
stratification freedom, nothing else) and the largest group has 4 images. Hashing 1000
images takes ~1-2 s on one core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from kvasir_ml.data.images import load_rgb

DEFAULT_MAX_DISTANCE = 12
HASH_BITS = 64
CONTENT_REGION = (0.30, 0.15, 0.85, 0.70)  # (x0, y0, x1, y1) as fractions of the content box
METHOD = ("imagehash.phash (64-bit DCT) of the middle of the lit content box "
          f"(x {CONTENT_REGION[0]:.0%}-{CONTENT_REGION[2]:.0%}, y {CONTENT_REGION[1]:.0%}-{CONTENT_REGION[3]:.0%}), "
          "greyscale JPEG draft >= 160 px; Hamming distance <= max_distance ties two images; ties merge transitively")
_DRAFT_PX = (160, 160)
_LIT_LEVEL, _LIT_SHARE = 25, 0.35
_ROWS_PER_BLOCK = 2048  # pairwise distances are computed in blocks of rows: memory stays ~N x 2048 bytes


def content_box(gray: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the rows/columns where at least 35% of pixels are lit (> 25)."""
    lit = gray > _LIT_LEVEL
    cols = np.flatnonzero(lit.mean(axis=0) >= _LIT_SHARE)
    rows = np.flatnonzero(lit.mean(axis=1) >= _LIT_SHARE)
    if cols.size < 2 or rows.size < 2:  # a dark frame: hash it whole
        return 0, 0, gray.shape[1], gray.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def perceptual_hash(path: str | Path) -> int:
    """The 64-bit content hash of one image file (see the module docstring).

    Raises:
        ImageError: the file cannot be decoded (it names the file).
    """
    import imagehash

    rgb = load_rgb(path, draft_size=_DRAFT_PX)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    x0, y0, x1, y1 = content_box(gray)
    w, h = x1 - x0, y1 - y0
    fx0, fy0, fx1, fy1 = CONTENT_REGION
    crop = gray[y0 + int(fy0 * h): y0 + max(int(fy1 * h), int(fy0 * h) + 1),
                x0 + int(fx0 * w): x0 + max(int(fx1 * w), int(fx0 * w) + 1)]
    bits = imagehash.phash(Image.fromarray(crop)).hash.reshape(-1)
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def close_pairs(hashes: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """``(i, j, distance)`` with ``i < j`` for every pair of 64-bit hashes within ``max_distance`` bits."""
    h = np.asarray(hashes, dtype=np.uint64)
    out: list[tuple[int, int, int]] = []
    for start in range(0, len(h), _ROWS_PER_BLOCK):
        block = h[start:start + _ROWS_PER_BLOCK]
        dist = np.bitwise_count(block[:, None] ^ h[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        keep = jj > ii + start
        out += [(int(i + start), int(j), int(dist[i, j])) for i, j in zip(ii[keep], jj[keep])]
    return out


@dataclass
class NearDuplicates:
    """Groups of near-duplicate images: ``groups`` {file_name: group key} for ``make_splits``,
    ``info`` (method, threshold, the merged groups and tied pairs) for the split file."""

    groups: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def _union_find(n: int, pairs: Sequence[tuple[int, int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in pairs:
        parent[find(i)] = find(j)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    return [m for m in members.values() if len(m) > 1]


def near_duplicate_groups(file_names: Sequence[str], root: str | Path,
                          max_distance: int = DEFAULT_MAX_DISTANCE) -> NearDuplicates:
    """Hash every image and group those within ``max_distance`` bits of each other.

    Args:
        file_names: canonical ``file_name``s (relative to ``root``).
        root: the data root.
        max_distance: Hamming distance threshold in bits (0-64).

    Returns:
        ``NearDuplicates``; ``info["groups"]`` lists the merged groups (sorted file names),
        ``info["pairs"]`` every tied pair with its distance.

    Raises:
        ImageError: an image cannot be decoded.
        ValueError: ``max_distance`` outside 0-64.
    """
    if not 0 <= max_distance <= HASH_BITS:
        raise ValueError(f"near-duplicate max_distance must be within 0-{HASH_BITS} bits, got {max_distance}")
    root = Path(root)
    names = list(file_names)
    hashes = np.array([perceptual_hash(root / f) for f in names], dtype=np.uint64)
    pairs = close_pairs(hashes, max_distance)
    clusters = sorted(sorted(names[i] for i in members) for members in _union_find(len(names), pairs))
    groups = {f: f"phash:{cluster[0]}" for cluster in clusters for f in cluster}
    info = {"method": METHOD, "max_distance": max_distance, "n_images_hashed": len(names),
            "n_groups": len(clusters), "n_images_grouped": len(groups), "groups": clusters,
            "pairs": sorted([names[i], names[j], d] for i, j, d in pairs)}
    return NearDuplicates(groups, info)
