"""Kvasir v1/v2: one folder per class, ``ROOT/<class>/*.jpg``.

The folder name is the source class; the taxonomy maps it to labels. Folders the taxonomy
lists as ignored (``unlabeled/``, ``dyed-unspecified/``) are reported and skipped; unknown
folders are reported as errors (``strict`` stops on them).
"""

from __future__ import annotations

import time
from pathlib import Path

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.sources.common import (
    IndexResult,
    Problem,
    add_probed_image,
    is_hidden,
    is_image_file,
    probe_images,
    relative,
)
from kvasir_ml.taxonomy import Taxonomy, TaxonomyError, load_taxonomy

SOURCE = "kvasir-v2"


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and not is_hidden(p))


def _class_files(root: Path, taxonomy: Taxonomy, source: str, problems: list[Problem]) -> list[tuple[Path, str]]:
    """(image path, canonical class) for every image in a known class folder."""
    src = taxonomy.source(source)
    found: list[tuple[Path, str]] = []
    for entry in sorted(root.iterdir()):
        if is_hidden(entry):
            continue
        rel = relative(entry, root)
        if entry.is_file():
            # An image here has no class (wrong ROOT?): an error. Other files (provenance.csv,
            # README) are expected beside the class folders.
            if is_image_file(entry):
                problems.append(Problem(rel, "image outside the class folders has no class; not indexed", kind="image outside class folders"))
            else:
                problems.append(Problem(rel, "file outside the class folders; not indexed", "ignored", kind="outside class folders"))
            continue
        if entry.name in src.ignored_folders:
            problems.append(
                Problem(
                    rel + "/",
                    f"folder skipped: the taxonomy lists {entry.name!r} as carrying no class "
                    f"({_count_files(entry)} files not indexed)",
                    "ignored",
                    kind="ignored folder",
                )
            )
            continue
        try:
            cls = src.canonical_class(entry.name)
        except TaxonomyError:
            problems.append(
                Problem(
                    rel + "/",
                    f"unknown class folder {entry.name!r} ({_count_files(entry)} files not indexed); "
                    f"known classes: {', '.join(src.classes)}",
                    kind="unknown class folder",
                )
            )
            continue
        for path in sorted(entry.rglob("*")):
            if path.is_dir() or is_hidden(path):
                continue
            if is_image_file(path):
                found.append((path, cls))
            else:
                problems.append(Problem(relative(path, root), "not an image file; skipped", kind="not an image"))
    return found


def index_kvasir_v2(
    root: str | Path,
    workers: int | None = None,
    strict: bool = False,
    taxonomy: Taxonomy | None = None,
    source: str = SOURCE,
) -> IndexResult:
    """Index Kvasir v1/v2 class folders into a canonical dataset (no boxes).

    Args:
        root: folder holding one sub-folder per class.
        workers: decoding processes (None = up to 2).
        strict: raise ``IndexingError`` on any error or warning (ignored folders never do).
        taxonomy: defaults to the project taxonomy.
        source: taxonomy source whose class names the folders use ("kvasir-v2"; the
            synthetic source has the same names).

    Returns:
        IndexResult: dataset and problems.
    """
    start = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder (expected one sub-folder per Kvasir class)")
    taxonomy = taxonomy or load_taxonomy()
    problems: list[Problem] = []
    files = _class_files(root, taxonomy, source, problems)
    probes = probe_images([p for p, _ in files], workers=workers)
    ds = CanonicalDataset.new(source, taxonomy=taxonomy)
    for (path, cls), probe in zip(files, probes):
        add_probed_image(ds, problems, relative(path, root), probe, taxonomy.labels_for(source, cls), source, cls)
    return IndexResult.finish(ds, problems, start, strict, source, root)
