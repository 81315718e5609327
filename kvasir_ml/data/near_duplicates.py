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
4. images whose hashes differ in at most ``DEFAULT_MAX_DISTANCE`` of 64 bits are tied
   (blocked all-pairs popcount, ``close_pair_arrays``); ties are merged transitively
   (single linkage: connected components) into groups.

At scale (HyperKvasir: ~110k frames, docs/scale.md): hashes are cached by file content and
computed on a process pool (``phash_cache``), so a re-split decodes nothing; ties chain
consecutive video frames into large groups, so the largest group and every group over
``LARGE_GROUP_SHARE`` of the images are reported, and ``max_group_images`` cuts a group that
is too large at its weakest links (``linkage``), recording the cut links.

The threshold was measured on the 1000 real Kvasir-SEG images (docs/near_duplicates.md):
of the 18 same-frame pairs an ORB + RANSAC check found among all 499,500 pairs, 17 are
within 12 bits; 12 unrelated pairs are within 12 bits as well (merging them costs a little
stratification freedom, nothing else) and the largest group has 4 images. Hashing 1000
images takes ~1-2 s on one core.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from kvasir_ml.data.images import load_rgb
from kvasir_ml.data.linkage import components, cut_large_groups, groups_from_labels

log = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE = 12
HASH_BITS = 64
CONTENT_REGION = (0.30, 0.15, 0.85, 0.70)  # (x0, y0, x1, y1) as fractions of the content box
METHOD = ("imagehash.phash (64-bit DCT) of the middle of the lit content box "
          f"(x {CONTENT_REGION[0]:.0%}-{CONTENT_REGION[2]:.0%}, y {CONTENT_REGION[1]:.0%}-{CONTENT_REGION[3]:.0%}), "
          "greyscale JPEG draft >= 160 px; Hamming distance <= max_distance ties two images; ties merge transitively")
_DRAFT_PX = (160, 160)
_LIT_LEVEL, _LIT_SHARE = 25, 0.35
_BLOCK_BYTES = 1 << 27  # pairwise distances are computed in blocks of rows: the XOR block stays <= 128 MiB
# A group of at least this share of the images is named (it unbalances a split).
LARGE_GROUP_SHARE = 0.005
# Tied pairs listed in the split file; beyond this only their number (video runs tie ~N x run length pairs).
PAIRS_RECORDED = 10_000


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


def close_pair_arrays(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, distance)`` arrays (``i < j``) of every pair of 64-bit hashes within ``max_distance`` bits.

    Blocked all-pairs: each block of rows is compared with the rows after it (the upper
    triangle only), and the block height shrinks as N grows so the temporary XOR matrix stays
    under ``_BLOCK_BYTES``. Time is N^2/2 popcounts (measured in docs/scale.md: ~110k hashes in
    well under the time it takes to decode them); memory is O(N) plus the pairs found.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    n = len(h)
    rows = int(max(16, min(2048, _BLOCK_BYTES // 8 // max(n, 1))))
    found_i, found_j, found_d = [], [], []
    for start in range(0, n, rows):
        block = h[start:start + rows]
        dist = np.bitwise_count(block[:, None] ^ h[None, start:])  # columns start..n-1
        ii, jj = np.nonzero(dist <= max_distance)
        keep = jj > ii  # j > i within the triangle (column jj is image start + jj)
        ii, jj = ii[keep], jj[keep]
        found_i.append(ii + start)
        found_j.append(jj + start)
        found_d.append(dist[ii, jj])
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d).astype(np.uint8)


def close_pairs(hashes: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """``(i, j, distance)`` with ``i < j`` for every pair of 64-bit hashes within ``max_distance`` bits."""
    ii, jj, dd = close_pair_arrays(hashes, max_distance)
    return list(zip(ii.tolist(), jj.tolist(), dd.tolist()))


@dataclass
class NearDuplicates:
    """Groups of near-duplicate images: ``groups`` {file_name: group key} for ``make_splits``,
    ``info`` (method, threshold, the merged groups and tied pairs) for the split file."""

    groups: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)  # hashes cached / computed, seconds (not saved: varies by run)


def near_duplicate_groups(file_names: Sequence[str], root: str | Path,
                          max_distance: int = DEFAULT_MAX_DISTANCE, *, max_group_images: int | None = None,
                          cache_dir: str | Path | None = None, workers: int | None = None,
                          progress: bool = False) -> NearDuplicates:
    """Hash every image and group those within ``max_distance`` bits of each other.

    Args:
        file_names: canonical ``file_name``s (relative to ``root``).
        root: the data root.
        max_distance: Hamming distance threshold in bits (0-64).
        max_group_images: a group with more images is cut at its weakest links until every
            piece fits (``linkage.cut_large_groups``; the cut links are recorded); None = no cap.
        cache_dir: folder of the hash store (``phash_cache``: sha256 -> hash, reused by every
            later split of the same images); None = no store.
        workers: hashing processes (None = every CPU up to 8; 0 or 1 = in this process).
        progress: tqdm bars while hashing.

    Returns:
        ``NearDuplicates``; its ``info`` holds the merged groups (sorted file names), the
        largest group, groups over ``LARGE_GROUP_SHARE`` of the images, the cut links and the
        tied pairs (all of them up to ``PAIRS_RECORDED``, else only their number).

    Raises:
        ImageError: an image cannot be decoded.
        ValueError: ``max_distance`` outside 0-64, or ``max_group_images`` < 2.
    """
    if not 0 <= max_distance <= HASH_BITS:
        raise ValueError(f"near-duplicate max_distance must be within 0-{HASH_BITS} bits, got {max_distance}")
    if max_group_images is not None and max_group_images < 2:
        raise ValueError(f"near-duplicate max_group_images must be >= 2 (or None), got {max_group_images}")
    from kvasir_ml.data.phash_cache import hash_images, store_path

    root = Path(root)
    names = list(file_names)
    store = store_path(cache_dir, METHOD) if cache_dir is not None else None
    start = time.perf_counter()
    hashes, hash_stats = hash_images([root / f for f in names], perceptual_hash, store, workers, progress)
    hashed = time.perf_counter()
    ii, jj, dd = close_pair_arrays(hashes, max_distance)
    whole = groups_from_labels(components(len(names), ii, jj))
    pieces, cuts = cut_large_groups(whole, ii, jj, dd, max_group_images) if max_group_images else (whole, [])
    clusters = sorted(sorted(names[i] for i in members) for members in pieces)
    groups = {f: f"phash:{cluster[0]}" for cluster in clusters for f in cluster}
    info = {"method": METHOD, "max_distance": max_distance, "n_images_hashed": len(names),
            "n_groups": len(clusters), "n_images_grouped": len(groups),
            **_size_report(clusters, whole, len(names), max_group_images),
            "cut_links": sorted([names[i], names[j], d] for i, j, d in cuts),
            "groups": clusters, "n_pairs": int(len(ii)),
            "pairs": (sorted([names[i], names[j], int(d)] for i, j, d in zip(ii.tolist(), jj.tolist(), dd.tolist()))
                      if len(ii) <= PAIRS_RECORDED else None)}
    stats = {**hash_stats, "hash_s": round(hashed - start, 3), "compare_s": round(time.perf_counter() - hashed, 3)}
    _warn_large(info)
    return NearDuplicates(groups, info, stats)


def _size_report(clusters: list[list[str]], whole: list[np.ndarray], n_images: int,
                 max_group_images: int | None) -> dict:
    """Largest group (before and after the cap) and the groups large enough to unbalance a split."""
    min_large = max(2, math.ceil(LARGE_GROUP_SHARE * n_images))
    large = [{"n_images": len(c), "first_file": c[0]}
             for c in sorted(clusters, key=lambda c: (-len(c), c[0])) if len(c) >= min_large]
    return {"max_group_images": max_group_images,
            "largest_group": max((len(c) for c in clusters), default=0),
            "largest_group_uncut": max((len(m) for m in whole), default=0),
            "large_group_min_images": min_large, "large_groups": large}


def _warn_large(info: dict) -> None:
    if info["large_groups"]:
        shown = ", ".join(f"{g['n_images']} images from {g['first_file']}" for g in info["large_groups"][:5])
        log.warning("near-duplicates: %d groups hold >= %.1f %% of the %d images each (%s%s): ties chain "
                    "(consecutive video frames) and a group that size unbalances the split; "
                    "data.near_duplicate_max_group caps it (cut at its weakest links; the cut links are "
                    "recorded and their side of the split reported)",
                    len(info["large_groups"]), 100 * LARGE_GROUP_SHARE, info["n_images_hashed"], shown,
                    ", ..." if len(info["large_groups"]) > 5 else "")
    if info["cut_links"]:
        log.info("near-duplicates: %d links cut to keep every group <= %d images (largest before: %d)",
                 len(info["cut_links"]), info["max_group_images"], info["largest_group_uncut"])


def format_near_duplicates(info: dict, shown: int = 5) -> str:
    """What the grouping did, for the CLI: groups, the largest, the large ones, the cut links."""
    lines = [f"near-duplicates: {info['n_groups']} groups of {info['n_images_grouped']} images kept together "
             f"(perceptual hash, <= {info['max_distance']} bits; largest group {info['largest_group']} images)"]
    if info.get("cut_links"):
        lines.append(f"  {len(info['cut_links'])} links cut so that no group has more than {info['max_group_images']} "
                     f"images (largest before: {info['largest_group_uncut']}); the split file lists them and "
                     "the splits they landed in")
    for group in info.get("large_groups", [])[:shown]:
        lines.append(f"  large group: {group['n_images']} images (>= {100 * LARGE_GROUP_SHARE:.1f} % of "
                     f"{info['n_images_hashed']}), first {group['first_file']}"
                     + ("" if info.get("max_group_images") else "; --max-group N cuts such groups"))
    return "\n".join(lines)
