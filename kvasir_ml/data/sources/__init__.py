"""Indexers: real Kvasir-family folders -> one canonical dataset (``coco.CanonicalDataset``).

Each indexer returns an ``IndexResult(dataset, problems)``; nothing is dropped silently
(see ``common.py`` for the problem severities and ``strict`` mode).
"""

from typing import Callable

from kvasir_ml.data.sources.common import ImageProbe, IndexingError, IndexResult, Problem, probe_image, probe_images
from kvasir_ml.data.sources.cvc_clinicdb import index_cvc_clinicdb
from kvasir_ml.data.sources.hyperkvasir import index_hyperkvasir
from kvasir_ml.data.sources.kvasir_seg import index_kvasir_seg
from kvasir_ml.data.sources.kvasir_v2 import index_kvasir_v2
from kvasir_ml.data.sources.masks import boxes_from_mask

# CLI names -> indexer functions; each takes (root, workers=, strict=) at least.
INDEXERS: dict[str, Callable[..., IndexResult]] = {
    "kvasir-v2": index_kvasir_v2,
    "hyperkvasir": index_hyperkvasir,
    "kvasir-seg": index_kvasir_seg,
    "cvc-clinicdb": index_cvc_clinicdb,
}

__all__ = [
    "INDEXERS",
    "ImageProbe",
    "IndexResult",
    "IndexingError",
    "Problem",
    "boxes_from_mask",
    "index_cvc_clinicdb",
    "index_hyperkvasir",
    "index_kvasir_seg",
    "index_kvasir_v2",
    "probe_image",
    "probe_images",
]
