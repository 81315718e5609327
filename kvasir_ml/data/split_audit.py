"""Copies that straddle a split someone else made.

A new split (``splits.make_splits``) keeps exact copies (``content_sha256``), near-duplicates
(perceptual hash, ``near_duplicates``) and Kvasir-SEG/HyperKvasir twins in one split. A split
that is *given* (``data.split_file``, ``kvasir-ml data split --folds``: HyperKvasir's official
folds) was made without that grouping, and it must not be changed: results are compared on it.
So the groups are computed anyway and the ones whose images lie in more than one split are
reported (count and file names) and recorded in the split's ``info["straddling"]``; the split
itself (``Split.splits``, ``Split.sha256``) is left exactly as given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.near_duplicates import METHOD, NearDuplicates, near_duplicate_groups
from kvasir_ml.data.splits import SPLIT_NAMES, Split, group_images, canonical_sha256

log = logging.getLogger(__name__)

NAMES_SHOWN = 10  # groups named in a log line / CLI output (split.json records all)


def straddling_groups(ds: CanonicalDataset, split: Split, near: NearDuplicates | None = None,
                      groups: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Groups of ``ds`` (exact copies, ``near`` groups, extra ``groups`` keys, merged
    transitively as ``make_splits`` merges them) whose images lie in more than one split.

    Returns:
        ``[{"files": [file_name, ...], "splits": [split of each file]}]``, sorted by first
        file name; a file the split does not list has split ``None`` and does not count.
    """
    where = {f: name for name in SPLIT_NAMES for f in split.splits.get(name, [])}
    out = []
    for members in group_images(ds, [g for g in (groups, near and near.groups) if g]):
        if len(members) < 2:
            continue
        files = sorted(ds.images[i]["file_name"] for i in members)
        placed = [where.get(f) for f in files]
        if len({s for s in placed if s is not None}) > 1:
            out.append({"files": files, "splits": placed})
    return out


def audit_given_split(ds: CanonicalDataset, split: Split, root: str | Path | None, max_distance: int | None,
                      groups: dict[str, str] | None = None) -> dict[str, Any]:
    """Find the copies a given split lets straddle; record them in ``split.info["straddling"]``.

    Args:
        ds: the dataset the split covers.
        split: the given split (its file lists are not changed).
        root: the folder ``ds``'s file names are relative to (for the perceptual hashes).
        max_distance: perceptual-hash threshold in bits; None = exact copies (and ``groups``) only.
        groups: extra ``{file_name: group key}`` (the twin map), or None.

    Returns:
        The record: ``{"method", "max_distance", "canonical_sha256", "n_groups_checked",
        "n_straddling", "n_images", "groups": [{"files", "splits"}]}``.

    Raises:
        ImageError: an image cannot be decoded for its perceptual hash (names the file).
    """
    data_sha = canonical_sha256(ds)
    known = split.info.get("straddling")
    if isinstance(known, dict) and known.get("max_distance") == max_distance \
            and known.get("canonical_sha256") == data_sha and not groups:
        return known  # audited before (an experiment's split handed to its runs)
    near = None
    if max_distance is not None:
        near = _recorded_near_duplicates(split, data_sha, max_distance) or near_duplicate_groups(
            [img["file_name"] for img in ds.images], root or ".", max_distance)
    found = straddling_groups(ds, split, near, groups)
    checked = len([m for m in group_images(ds, [g for g in (groups, near and near.groups) if g]) if len(m) > 1])
    record = {
        "method": ("content_sha256" + (f"; {METHOD}" if near is not None else "")
                   + ("; extra group keys (twin map)" if groups else "")),
        "max_distance": max_distance,
        "canonical_sha256": data_sha,
        "n_groups_checked": checked,
        "n_straddling": len(found),
        "n_images": sum(len(g["files"]) for g in found),
        "groups": found,
    }
    split.info["straddling"] = record
    return record


def _recorded_near_duplicates(split: Split, data_sha: str, max_distance: int) -> NearDuplicates | None:
    """The near-duplicate groups a split made by ``make_splits`` recorded for this very data and
    threshold (no image is hashed again), else None."""
    recorded = split.info.get("near_duplicates")
    if not (isinstance(recorded, dict) and recorded.get("max_distance") == max_distance
            and isinstance(recorded.get("groups"), list) and split.canonical_sha256 == data_sha):
        return None
    # Groups a cap cut apart are joined again through their cut links: the audit reports
    # near-duplicates across splits whether or not a cap allowed them.
    parent = {f: c[0] for c in recorded["groups"] for f in c}

    def find(f: str) -> str:
        while parent.setdefault(f, f) != f:
            f = parent[f]
        return f

    for a, b, _ in recorded.get("cut_links") or []:
        parent[find(a)] = find(b)
    return NearDuplicates({f: f"phash:{find(f)}" for f in list(parent)}, recorded)


def format_straddling(record: dict[str, Any], shown: int = NAMES_SHOWN) -> str:
    """One line (plus up to ``shown`` group lines) for the CLI and the log."""
    n = record["n_straddling"]
    if not n:
        return (f"copies across splits: none ({record['n_groups_checked']} groups of copies / near-duplicates "
                "checked; the given split is used as it is)")
    lines = [f"copies across splits: {n} groups ({record['n_images']} images) of exact copies / near-duplicates "
             "lie in more than one split of the given split (used as it is; all listed in split.json "
             "info.straddling):"]
    for group in record["groups"][:shown]:
        lines.append("  " + ", ".join(f"{f} [{s or 'unlisted'}]" for f, s in zip(group["files"], group["splits"])))
    if n > shown:
        lines.append(f"  ... and {n - shown} more")
    return "\n".join(lines)


def report_straddling(record: dict[str, Any]) -> None:
    """Log the record: a warning when copies straddle, else an info line."""
    (log.warning if record["n_straddling"] else log.info)("%s", format_straddling(record))
