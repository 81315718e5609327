"""HyperKvasir: ``labeled-images/`` (CSV + folder tree) and ``segmented-images/``.

Expected layout (as downloaded from https://datasets.simula.no/hyper-kvasir/)::

    ROOT/labeled-images/image-labels.csv          Video file,Organ,Finding,Classification
    ROOT/labeled-images/<organ>/<classification>/<finding>/<uuid>.jpg
    ROOT/segmented-images/images/<uuid>.jpg       the 1000 polyp images with masks
    ROOT/segmented-images/masks/<uuid>.jpg
    ROOT/segmented-images/bounding-boxes.json     Kvasir-SEG format, keyed by uuid

The CSV row decides the class (the folder is cross-checked; a disagreement is a warning).
The segmented images are the labeled polyp images again, so their boxes are attached to the
labeled entry with the same uuid rather than indexing the image twice; a segmented image
with no labeled twin (or a different size) becomes an entry of its own.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.sources.common import (
    ImageProbe,
    IndexResult,
    Problem,
    add_probed_image,
    is_hidden,
    is_image_file,
    probe_images,
    relative,
)
from kvasir_ml.data.sources.kvasir_seg import attach_boxes, find_mask, list_images, read_box_json
from kvasir_ml.io import read_text_utf8
from kvasir_ml.taxonomy import Taxonomy, TaxonomyError, load_taxonomy

SOURCE = "hyperkvasir"
CSV_NAME = "image-labels.csv"
CSV_COLUMNS = ("Video file", "Organ", "Finding", "Classification")


def read_label_csv(path: Path, root: Path, taxonomy: Taxonomy, problems: list[Problem]) -> dict[str, str]:
    """``{uuid: canonical class}`` from ``image-labels.csv``; bad rows are reported.

    Raises:
        ValueError: the file is not UTF-8, is not CSV, or its header lacks the HyperKvasir
            columns (each names the file, and the line where there is one).
    """
    src = taxonomy.source(SOURCE)
    rel = relative(path, root) if path.is_relative_to(root) else str(path)
    classes: dict[str, str] = {}
    reader = csv.DictReader(io.StringIO(read_text_utf8(path), newline=""))
    try:
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a HyperKvasir image-labels.csv (missing columns {missing})")
        for row in reader:
            where = f"{rel}:{reader.line_num}"
            uuid, finding = (row["Video file"] or "").strip(), (row["Finding"] or "").strip()
            if not uuid:
                problems.append(Problem(where, "row has no 'Video file' (image id); row skipped", kind="bad CSV row"))
                continue
            try:
                cls = src.canonical_class(finding)
            except TaxonomyError:
                problems.append(Problem(where, f"row {uuid!r} has unknown finding {finding!r}; row skipped", kind="unknown class in CSV"))
                continue
            if uuid in classes and classes[uuid] != cls:
                problems.append(Problem(where, f"{uuid!r} listed again as {cls!r} (first {classes[uuid]!r}); first kept", "warning", kind="duplicate CSV row"))
                continue
            classes[uuid] = cls
    except csv.Error as exc:  # NUL bytes, a field over the size limit: the file is not usable CSV
        raise ValueError(f"{path}:{reader.line_num + 1}: not readable as CSV ({exc})") from None  # the line being read
    return classes


def _labeled_files(labeled_dir: Path, root: Path, problems: list[Problem]) -> list[tuple[Path, str]]:
    """(image, finding folder name) for files at ``<organ>/<classification>/<finding>/``."""
    found = []
    for path in sorted(labeled_dir.rglob("*")):
        if path.is_dir() or is_hidden(path) or path.name == CSV_NAME:
            continue
        if path.relative_to(labeled_dir).parts[0] == "segmented-images":
            continue  # ROOT given as labeled_dir: the segmented part is indexed separately
        rel = relative(path, root)
        depth = len(path.relative_to(labeled_dir).parts)
        if not is_image_file(path):
            if depth > 1:  # stray CSV/README files at the top are ignored silently below
                problems.append(Problem(rel, "not an image file; skipped", kind="not an image"))
            else:
                problems.append(Problem(rel, "file beside the class tree; not indexed", "ignored", kind="outside class tree"))
            continue
        if depth != 4:
            problems.append(Problem(rel, "image not at <organ>/<classification>/<finding>/; skipped", kind="unexpected location"))
            continue
        found.append((path, path.parent.name))
    return found


def _resolve_class(
    rel: str, uuid: str, folder: str, csv_classes: dict[str, str], taxonomy: Taxonomy, problems: list[Problem]
) -> str | None:
    src = taxonomy.source(SOURCE)
    try:
        folder_cls = src.canonical_class(folder)
    except TaxonomyError:
        folder_cls = None
    if uuid in csv_classes:
        cls = csv_classes[uuid]
        if folder_cls != cls:
            problems.append(Problem(rel, f"folder {folder!r} disagrees with the CSV class {cls!r}; CSV used", "warning", kind="folder/CSV disagree"))
        return cls
    if folder_cls is None:
        problems.append(Problem(rel, f"not in {CSV_NAME} and folder {folder!r} is not a known class; skipped", kind="unknown class folder"))
        return None
    problems.append(Problem(rel, f"not in {CSV_NAME}; class {folder_cls!r} taken from the folder", "warning", kind="image without CSV row"))
    return folder_cls


def _index_labeled(
    root: Path, labels_csv: Path | None, ds: CanonicalDataset, taxonomy: Taxonomy, workers: int | None, problems: list[Problem]
) -> dict[str, int]:
    """Index labeled-images into ``ds``; returns ``{uuid: image id}``."""
    labeled_dir = root / "labeled-images" if (root / "labeled-images").is_dir() else root
    csv_path = labels_csv or next((p for p in (labeled_dir / CSV_NAME, root / CSV_NAME) if p.exists()), None)
    csv_classes = read_label_csv(csv_path, root, taxonomy, problems) if csv_path else {}
    files = _labeled_files(labeled_dir, root, problems) if labeled_dir != root or csv_path else []
    chosen = []
    for path, folder in files:
        cls = _resolve_class(relative(path, root), path.stem, folder, csv_classes, taxonomy, problems)
        if cls is not None:
            chosen.append((path, cls))
    probes = probe_images([p for p, _ in chosen], workers=workers)
    ids: dict[str, int] = {}
    for (path, cls), probe in zip(chosen, probes):
        image_id = add_probed_image(ds, problems, relative(path, root), probe, taxonomy.labels_for(SOURCE, cls), SOURCE, cls)
        if image_id is not None:
            ids[path.stem] = image_id
    if csv_path is not None:
        csv_rel = relative(csv_path, root) if csv_path.is_relative_to(root) else str(csv_path)
        for uuid in sorted(set(csv_classes) - {p.stem for p, _ in files}):
            problems.append(Problem(f"{csv_rel}#{uuid}", "CSV row has no image in the labeled-images tree", kind="CSV row without image"))
    return ids


def _index_segmented(
    root: Path, ds: CanonicalDataset, labeled_ids: dict[str, int], taxonomy: Taxonomy, workers: int | None, problems: list[Problem]
) -> None:
    """Attach segmented-images boxes to labeled twins, or index them as entries of their own."""
    seg_dir = root / "segmented-images"
    json_path = seg_dir / "bounding-boxes.json"
    entries = read_box_json(json_path, root, problems) if json_path.exists() else None
    json_rel = relative(json_path, root) if entries is not None else None
    images = list_images(seg_dir / "images", root, problems) if (seg_dir / "images").is_dir() else []
    masks = [find_mask(seg_dir / "masks", p.stem) if (seg_dir / "masks").is_dir() else None for p in images]
    # Masks only where boxes must come from them: no entry, or an empty box list.
    masks = [m if entries is None or not entries.get(p.stem, {}).get("bbox") else None for p, m in zip(images, masks)]
    probes = probe_images(images, masks, workers=workers)
    by_id = ds.image_by_id
    labels = taxonomy.labels_for(SOURCE, "polyps")
    for path, probe in zip(images, probes):
        rel, uuid = relative(path, root), path.stem
        twin = by_id.get(labeled_ids.get(uuid, -1))
        if twin is not None and probe.error is None and (twin["width"], twin["height"]) == (probe.width, probe.height):
            twin["segmented_file_name"] = rel
            image_id = twin["id"]
        else:
            if twin is not None:
                problems.append(Problem(rel, f"labeled twin {twin['file_name']} differs in size; indexed separately", "warning", kind="segmented twin differs"))
            image_id = add_probed_image(ds, problems, rel, probe, labels, SOURCE, "polyps")
            if image_id is None:
                continue
        attach_boxes(ds, image_id, rel, probe, entries.get(uuid) if entries else None, json_rel, taxonomy, problems)
    for uuid in sorted(set(entries or {}) - {p.stem for p in images}):
        twin = by_id.get(labeled_ids.get(uuid, -1))
        if twin is None:
            problems.append(Problem(f"{json_rel}#{uuid}", "JSON entry has no image (segmented or labeled); skipped", kind="JSON entry without image"))
            continue
        stand_in = ImageProbe(path=twin["file_name"], width=twin["width"], height=twin["height"])
        assert entries is not None  # the loop runs over its keys
        attach_boxes(ds, twin["id"], twin["file_name"], stand_in, entries[uuid], json_rel, taxonomy, problems)


def index_hyperkvasir(
    root: str | Path,
    labels_csv: str | Path | None = None,
    workers: int | None = None,
    strict: bool = False,
    taxonomy: Taxonomy | None = None,
) -> IndexResult:
    """Index a HyperKvasir download (labeled and/or segmented images).

    Args:
        root: the HyperKvasir folder (holding ``labeled-images/`` and/or ``segmented-images/``),
            or the ``labeled-images`` folder itself.
        labels_csv: ``image-labels.csv`` if it is not at ``labeled-images/image-labels.csv``.
        workers: decoding processes (None = up to 2).
        strict: raise ``IndexingError`` on any error or warning.
        taxonomy: defaults to the project taxonomy.

    Returns:
        IndexResult: dataset (source "hyperkvasir", 23 classes, polyp boxes) and problems.
    """
    start = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder (expected HyperKvasir's labeled-images/ and/or segmented-images/)")
    taxonomy = taxonomy or load_taxonomy()
    problems: list[Problem] = []
    ds = CanonicalDataset.new(SOURCE, taxonomy=taxonomy)
    labeled_ids = _index_labeled(root, Path(labels_csv) if labels_csv else None, ds, taxonomy, workers, problems)
    if (root / "segmented-images").is_dir():
        _index_segmented(root, ds, labeled_ids, taxonomy, workers, problems)
    return IndexResult.finish(ds, problems, start, strict, SOURCE, root)
