"""CVC-ClinicDB (CVC-612): colonoscopy frames with polyp masks, no box file.

Two layouts are read: ``images/`` + ``masks/`` (a mask named like its frame, or with the
frame's ``_fram`` suffix written ``_mask``: ``fine_3_10_fram.jpg`` -> ``fine_3_10_mask.jpg``)
and the official release's ``Original/`` + ``Ground Truth/`` (same file names). Every box
is derived from the mask (``masks.boxes_from_mask``: one box per connected component);
every frame is of the source class ``polyps``. A frame without a mask is indexed without
boxes and reported.
"""

from __future__ import annotations

import time
from pathlib import Path

from kvasir_ml.data.coco import CanonicalDataset
from kvasir_ml.data.sources.common import IndexResult, Problem, add_probed_image, probe_images, relative
from kvasir_ml.data.sources.kvasir_seg import attach_boxes, find_mask, list_images
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy

SOURCE = "cvc-clinicdb"
LAYOUTS = (("images", "masks"), ("Original", "Ground Truth"))


def mask_for(mask_dir: Path, image: Path) -> Path | None:
    """The mask of ``image``: same stem, else the stem with ``_fram`` written ``_mask``."""
    found = find_mask(mask_dir, image.stem)
    if found is None and image.stem.endswith("_fram"):
        found = find_mask(mask_dir, image.stem[: -len("_fram")] + "_mask")
    return found


def index_cvc_clinicdb(
    root: str | Path, workers: int | None = None, strict: bool = False, taxonomy: Taxonomy | None = None
) -> IndexResult:
    """Index a CVC-ClinicDB folder into a canonical dataset with mask-derived boxes.

    Args:
        root: folder with ``images/`` + ``masks/`` or ``Original/`` + ``Ground Truth/``.
        workers: decoding processes (None = up to 2).
        strict: raise ``IndexingError`` if anything was skipped or converted.
        taxonomy: defaults to the project taxonomy.

    Returns:
        IndexResult: dataset (source "cvc-clinicdb", class "polyps", ``box_origin`` "mask") and problems.
    """
    start = time.perf_counter()
    root = Path(root)
    taxonomy = taxonomy or load_taxonomy()
    layout = next(((root / i, root / m) for i, m in LAYOUTS if (root / i).is_dir()), None)
    if layout is None:
        raise FileNotFoundError(f"{root}: no images/ (with masks/) or Original/ (with Ground Truth/) folder "
                                "(expected the CVC-ClinicDB layout)")
    image_dir, mask_dir = layout
    problems: list[Problem] = []
    images = list_images(image_dir, root, problems)
    masks = [mask_for(mask_dir, p) if mask_dir.is_dir() else None for p in images]
    probes = probe_images(images, masks, workers=workers)
    ds = CanonicalDataset.new(SOURCE, taxonomy=taxonomy)
    ds.info["boxes_from"] = "masks"
    labels = taxonomy.labels_for(SOURCE, "polyps")
    for path, probe in zip(images, probes):
        rel = relative(path, root)
        image_id = add_probed_image(ds, problems, rel, probe, labels, SOURCE, "polyps")
        if image_id is not None:
            attach_boxes(ds, image_id, rel, probe, None, None, taxonomy, problems)
    return IndexResult.finish(ds, problems, start, strict, SOURCE, root)
