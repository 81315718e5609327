"""What every indexer shares: problem reports, the per-image probe and the process pool.

An indexer never drops an input silently. Everything it does not index as-is becomes a
``Problem`` with a severity:

* ``error``   — the file (or box, or JSON entry) was NOT indexed;
* ``warning`` — it was indexed, with a caveat (converted colour mode, size differs from the
  JSON, class taken from the folder because the CSV has no row, ...);
* ``ignored`` — an expected skip (``unlabeled/`` folders, stray files beside the class folders).

``--strict`` turns any error or warning into an ``IndexingError`` that lists them all.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.images import IMAGE_SUFFIXES, MIN_FRAME_SIDE_PX, ImageError, load_rgb, read_image_bytes
from kvasir_ml.data.pool import worker_pool
from kvasir_ml.data.sources.masks import boxes_from_mask

SEVERITIES = ("error", "warning", "ignored")
# Below this many images the pool's start-up (~0.1-0.3 s) costs more than it saves.
_MIN_IMAGES_FOR_POOL = 32
# Colour modes that load_rgb converts; each is reported so a conversion is never silent.
_MODE_NOTES = {
    "L": "grayscale (mode L), converted to RGB",
    "1": "1-bit (mode 1), converted to RGB",
    "P": "palette image (mode P), converted to RGB",
    "PA": "palette image with alpha (mode PA), composited on black",
    "LA": "grayscale with alpha (mode LA), composited on black",
    "RGBA": "alpha channel (mode RGBA), composited on black",
    "CMYK": "CMYK image, converted to RGB",
    "YCbCr": "YCbCr image, converted to RGB",
    "I;16": "16-bit image (mode I;16), scaled to 8-bit RGB",
    "I;16B": "16-bit image (mode I;16B), scaled to 8-bit RGB",
    "I;16L": "16-bit image (mode I;16L), scaled to 8-bit RGB",
    "I": "32-bit integer image (mode I), scaled to 8-bit RGB",
    "F": "float image (mode F), scaled to 8-bit RGB",
}


@dataclass(frozen=True)
class Problem:
    """One input that was not indexed as-is. ``path`` is relative to the dataset root."""

    path: str
    reason: str
    severity: str = "error"
    kind: str = ""  # short category for reports ("missing image", "bad box", ...); default: reason

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"problem severity {self.severity!r} not in {SEVERITIES}")

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.reason}"


class IndexingError(ValueError):
    """Strict indexing met problems; ``problems`` lists all of them."""

    def __init__(self, source: str, root: str | Path, problems: Sequence[Problem]):
        self.problems = list(problems)
        lines = [f"{source} index of {root}: {len(self.problems)} problem(s) (strict mode):"]
        lines += [f"  {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        super().__init__("\n".join(lines))


@dataclass
class IndexResult:
    """An indexer's output: the canonical dataset and every problem met on the way."""

    dataset: CanonicalDataset
    problems: list[Problem] = field(default_factory=list)
    elapsed_s: float = 0.0

    def counts(self) -> dict[str, int]:
        """Number of problems per severity."""
        found = Counter(p.severity for p in self.problems)
        return {sev: found.get(sev, 0) for sev in SEVERITIES}

    def report(self, max_per_reason: int = 5) -> str:
        """Human-readable summary: counts, then problems grouped by reason with examples."""
        ds = self.dataset
        lines = [
            f"indexed {len(ds.images)} images, {len(ds.annotations)} boxes in {self.elapsed_s:.1f} s; "
            + ", ".join(f"{n} {sev}" for sev, n in self.counts().items())
        ]
        groups: dict[tuple[str, str], list[Problem]] = {}
        for p in self.problems:
            # Group by kind so 10,000 "no image" rows read as one line.
            groups.setdefault((p.severity, p.kind or p.reason), []).append(p)
        for (sev, head), items in sorted(groups.items(), key=lambda kv: (SEVERITIES.index(kv[0][0]), kv[0][1])):
            lines.append(f"{sev} x{len(items)}: {head}")
            for p in items[:max_per_reason]:
                lines.append(f"    {p.path}: {p.reason}")
            if len(items) > max_per_reason:
                lines.append(f"    ... {len(items) - max_per_reason} more")
        return "\n".join(lines)

    @classmethod
    def finish(cls, ds: CanonicalDataset, problems: list[Problem], start_s: float, strict: bool, source: str,
               root: str | Path) -> "IndexResult":
        """What every indexer ends with: report identical images under two classes, time it, and
        raise ``IndexingError`` when ``strict`` and any error or warning was recorded."""
        report_conflicting_duplicates(ds, problems)
        result = cls(ds, problems, time.perf_counter() - start_s)
        bad = [p for p in problems if p.severity != "ignored"]
        if strict and bad:
            raise IndexingError(source, root, bad)
        return result


@dataclass
class ImageProbe:
    """Everything an indexer needs from one image file (computed in a worker process)."""

    path: str
    width: int = 0
    height: int = 0
    mode: str = ""
    inset: str | None = None
    inset_box: list[float] | None = None
    content_sha256: str = ""
    mask_boxes_xywh_px: list[list[float]] | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_hidden(path: Path) -> bool:
    # .DS_Store, ._resource forks, editor swap files: not data, skipped without a report.
    return path.name.startswith(".")


def probe_image(path: str, mask_path: str | None = None) -> ImageProbe:
    """Decode one image: size, colour mode, inset state/box, content hash, mask boxes.

    Never raises for bad input: a problem is returned in ``error`` (not indexable) or
    ``notes`` (indexable with a caveat), each naming the problem without the path. Even an
    unexpected failure on one odd image becomes its ``error`` (it runs in a worker pool,
    where one exception would otherwise abort the whole index).
    """
    try:
        return _probe_image(path, mask_path)
    except Exception as exc:  # noqa: BLE001 — see docstring
        return ImageProbe(path=path, error=f"cannot be processed ({type(exc).__name__}: {exc})")


def _probe_image(path: str, mask_path: str | None) -> ImageProbe:
    from kvasir_ml.data.inset import detect_inset

    probe = ImageProbe(path=path)
    try:
        # One read: the size, mode and hash below all come from these bytes, so a file rewritten
        # during the index cannot pair one version's size with the other's sha256.
        data = read_image_bytes(path)
        rgb = load_rgb(path, data=data, min_side_px=MIN_FRAME_SIDE_PX)  # its errors are the clearest
        with Image.open(io.BytesIO(data)) as img:
            probe.mode = img.mode
    except ImageError as exc:
        probe.error = exc.reason
        return probe
    except OSError as exc:  # e.g. permission denied before PIL could say anything
        probe.error = f"cannot open ({exc})"
        return probe
    probe.height, probe.width = rgb.shape[:2]
    if probe.mode in _MODE_NOTES:
        probe.notes.append(_MODE_NOTES[probe.mode])
    inset = detect_inset(rgb)
    probe.inset = inset.state
    probe.inset_box = [float(v) for v in inset.box_xywh_px] if inset.box_xywh_px is not None else None
    probe.content_sha256 = hashlib.sha256(data).hexdigest()
    if mask_path is not None:
        try:
            mask = load_rgb(mask_path)
        except ImageError as exc:
            probe.notes.append(f"mask {Path(mask_path).name}: {exc.reason}; no boxes derived")
            return probe
        if mask.shape[:2] != rgb.shape[:2]:
            probe.notes.append(
                f"mask {Path(mask_path).name} is {mask.shape[1]}x{mask.shape[0]}, image is "
                f"{probe.width}x{probe.height}; no boxes derived"
            )
            return probe
        probe.mask_boxes_xywh_px = [list(b) for b in boxes_from_mask(mask)]
    return probe


def _probe_args(args: tuple[str, str | None]) -> ImageProbe:
    return probe_image(*args)


def probe_images(
    paths: Sequence[Path], mask_paths: Sequence[Path | None] | None = None, workers: int | None = None
) -> list[ImageProbe]:
    """``probe_image`` over many files, in order, on a process pool.

    Args:
        paths: image files.
        mask_paths: optional mask per image (None entries: no mask).
        workers: processes; None = min(2, CPU count); 0 or 1 = in this process.
    """
    masks = list(mask_paths) if mask_paths is not None else [None] * len(paths)
    args = [(str(p), str(m) if m is not None else None) for p, m in zip(paths, masks)]
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or len(args) < _MIN_IMAGES_FOR_POOL:
        return [_probe_args(a) for a in args]
    with worker_pool(workers) as pool:  # workers die with this process (SIGKILL/SIGTERM of `data index`)
        return list(pool.map(_probe_args, args, chunksize=16))


def add_probed_image(
    ds: CanonicalDataset,
    problems: list[Problem],
    rel: str,
    probe: ImageProbe,
    labels: Iterable[str],
    source: str,
    source_class: str,
    **extra,
) -> int | None:
    """Add a probed image to ``ds`` (or record why not); returns the image id or None."""
    if probe.error is not None:
        problems.append(Problem(rel, f"not indexed: {probe.error}", kind="unreadable image"))
        return None
    for note in probe.notes:
        problems.append(Problem(rel, note, "warning", kind="converted or partial"))
    return ds.add_image(
        rel,
        probe.width,
        probe.height,
        labels,
        source,
        source_class,
        inset=probe.inset,
        inset_box=probe.inset_box,
        content_sha256=probe.content_sha256,
        **extra,
    )


def report_conflicting_duplicates(ds: CanonicalDataset, problems: list[Problem]) -> None:
    """Warn about byte-identical images indexed under different classes (conflicting labels).

    Every such image gets a warning naming its twins and their classes; all stay indexed
    (the split keeps identical content on one side; ``--strict`` fails on them).
    """
    groups: dict[str, list[dict]] = {}
    for img in ds.images:
        if img.get("content_sha256"):
            groups.setdefault(img["content_sha256"], []).append(img)
    for imgs in groups.values():
        if len({(img.get("source_class"), tuple(sorted(img["labels"]))) for img in imgs}) < 2:
            continue
        for img in imgs:
            twins = [f"{o['file_name']} ({o.get('source_class')})" for o in imgs if o is not img]
            problems.append(Problem(
                img["file_name"], f"identical bytes to {', '.join(twins[:3])}{' ...' if len(twins) > 3 else ''} "
                f"but indexed as {img.get('source_class')!r} with labels {img['labels']}: one image, conflicting "
                "labels (check which class is right)", "warning", kind="same image, different class"))


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
