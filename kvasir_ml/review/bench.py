"""Benchmark of label-error discovery: inject known noise, run ``review suspects``, score the ranking.

Labels are scored per image: the label suspects ranked by score, ``precision_at_n`` = share
of the top n that are swapped frames, ``recall_at_2n`` = share of the swapped frames in the
top 2n (n = number of swapped frames). Boxes are scored per injected edit: a box suspect
*finds* an edit when it points at it (a shifted or added box: the suspect's given box is
that box; a dropped box: the suspect's suggested missing box overlaps it with IoU >= 0.3);
the same two numbers over the box suspects with n = number of edits, plus recall per noise
type and the image-level numbers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from kvasir_ml.data.coco import CanonicalDataset, load_canonical
from kvasir_ml.geometry import iou_xywh_px
from kvasir_ml.review.noise import BOX_NOISE, inject_box_noise, inject_label_swaps
from kvasir_ml.review.oof import run_kfold
from kvasir_ml.review.suspects import rank_suspects

log = logging.getLogger(__name__)

MISSING_IOU = 0.3  # a suggested missing box this close to a dropped one finds it


def _at(ranked_hits: Sequence[bool], n: int) -> dict[str, float | None]:
    if n == 0:
        return {"precision_at_n": None, "recall_at_2n": None}
    return {"precision_at_n": round(sum(ranked_hits[:n]) / n, 4),
            "recall_at_2n": round(min(n, sum(ranked_hits[:2 * n])) / n, 4)}


def score_label_ranking(suspects: Sequence[dict[str, Any]], injected: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``precision_at_n``, ``recall_at_2n``, ``n_injected`` of the label suspects."""
    truth = {r["file_name"] for r in injected}
    ranked = list(dict.fromkeys(s["file_name"] for s in suspects if s["kind"] == "label"))
    n = len(truth)
    hits = [f in truth for f in ranked]
    flagged = {s["file_name"] for s in suspects if s["kind"] == "label" and s["flagged"]}
    return {**_at(hits, n), "n_injected": n, "n_images": len(ranked), "n_flagged": len(flagged),
            "flagged_precision": round(len(flagged & truth) / len(flagged), 4) if flagged else None,
            "flagged_recall": round(len(flagged & truth) / n, 4) if n else None}


def _finds(suspect: dict[str, Any], edit: dict[str, Any]) -> bool:
    if suspect["file_name"] != edit["file_name"] or not suspect["kind"].startswith("box-"):
        return False
    if edit["noise"] == "drop":
        return suspect["kind"] == "box-missing" and iou_xywh_px(suspect["suggested"]["xywh_px"], edit["true_box"]) >= MISSING_IOU
    given = suspect.get("given")
    return given is not None and iou_xywh_px(given["xywh_px"], edit["box"]) >= 0.99


def score_box_ranking(suspects: Sequence[dict[str, Any]], injected: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-edit ``precision_at_n``/``recall_at_2n`` of the box suspects (see the module docstring)."""
    boxes = [s for s in suspects if s["kind"].startswith("box-")]
    n = len(injected)
    found_at: dict[int, int] = {}  # edit index -> rank of the first suspect that finds it
    hits = []
    for rank, s in enumerate(boxes):
        match = next((k for k, e in enumerate(injected) if k not in found_at and _finds(s, e)), None)
        if match is not None:
            found_at[match] = rank
        hits.append(match is not None)
    by_noise = {}
    for noise in BOX_NOISE:
        idx = [k for k, e in enumerate(injected) if e["noise"] == noise]
        by_noise[noise] = {"n": len(idx), "found_in_top_2n": sum(1 for k in idx if found_at.get(k, 10**9) < 2 * n)}
    truth = {e["file_name"] for e in injected}
    ranked_files = list(dict.fromkeys(s["file_name"] for s in boxes))
    image_level = {**_at([f in truth for f in ranked_files], len(truth)), "n_images_with_noise": len(truth)}
    return {**_at(hits, n), "n_injected": n, "by_noise": by_noise, "image_level": image_level,
            "n_suspects": len(boxes)}


def _evaluate(canonical: Path, root: Path, work: Path, k: int, label_noise, box_noise, **kfold: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    oof = run_kfold(canonical, work, k=k, root=root, **kfold)
    suspects = rank_suspects(load_canonical(canonical), oof)
    out: dict[str, Any] = {"kfold_s": round(time.perf_counter() - t0, 1), "n_suspects": len(suspects),
                           "fold_models": _fold_quality(oof.runs)}
    if label_noise is not None:
        out["labels"] = score_label_ranking(suspects, label_noise)
        multilabel = [{**s, "score": s["multilabel_score"]} for s in suspects if "multilabel_score" in s]
        if multilabel:  # the classifier's multi-label view alone, for comparison with the class view
            multilabel.sort(key=lambda s: (-s["score"], s["file_name"]))
            out["labels_multilabel_view"] = score_label_ranking(multilabel, label_noise)
    if box_noise is not None:
        out["boxes"] = score_box_ranking(suspects, box_noise)
    return out


def _fold_quality(runs: Sequence[str]) -> dict[str, list[float | None]]:
    """How good the fold models were, on their (noisy) test folds: the ranking is only as good."""
    from kvasir_ml.results_schema import read_metrics

    out: dict[str, list[float | None]] = {}
    for run in runs:
        m = read_metrics(Path(run) / "metrics.json")
        test = m.scored("test")
        key, value = (("classifier_test_macro_ap", test.macro_ap) if m.kind == "classifier"
                      else ("detector_test_coco_ap50", test.coco_ap50))
        out.setdefault(key, []).append(round(value, 4) if value is not None else None)
    return out


def _write_noisy(ds: CanonicalDataset, path: Path) -> Path:
    ds.save(path, keep_backup=False)
    return path


def bench_synthetic(out_dir: str | Path, n_images: int = 400, k: int = 4, seed: int = 0, fraction: float = 0.1,
                    classifier_overrides: Sequence[str] = (), detector_overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Synthetic frames with 10 % confusable swaps and 10 % box edits; k-fold; scores.

    Returns:
        ``{"labels": {...}, "boxes": {...}, "n_images", "k", "kfold_s", ...}``.
    """
    from kvasir_ml.data.synth import synthesize
    from kvasir_ml.experiment.config import DEFAULT_HARD_PAIRS

    out = Path(out_dir)
    clean = load_canonical(synthesize(out / "data", n_images, seed))
    noisy, swaps = inject_label_swaps(clean, fraction, seed, DEFAULT_HARD_PAIRS)
    noisy, edits = inject_box_noise(noisy, fraction, seed + 1, exclude=[r["file_name"] for r in swaps])
    canonical = _write_noisy(noisy, out / "data" / "noisy.coco.json")
    result = _evaluate(canonical, out / "data", out / "work", k, swaps, edits,
                       classifier_overrides=classifier_overrides, detector_overrides=detector_overrides)
    return {**result, "dataset": "synthetic", "n_images": n_images, "k": k, "noise_fraction": fraction,
            "swap_pairs": [list(p) for p in DEFAULT_HARD_PAIRS]}


def bench_kvasir_seg(root: str | Path, out_dir: str | Path, n_images: int | None = 300, k: int = 4, seed: int = 0,
                     fraction: float = 0.1, detector_overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Real Kvasir-SEG frames (a seeded sample of ``n_images``) with 10 % box edits; detector-only k-fold."""
    import random

    from kvasir_ml.data.sources.kvasir_seg import index_kvasir_seg

    root, out = Path(root).resolve(), Path(out_dir)
    ds = index_kvasir_seg(root).dataset
    if n_images is not None and n_images < len(ds.images):
        ds = ds.subset(random.Random(seed).sample(sorted(img["file_name"] for img in ds.images), n_images))
    noisy, edits = inject_box_noise(ds, fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    canonical = _write_noisy(noisy, out / "kvasir-seg-noisy.coco.json")
    result = _evaluate(canonical, root, out / "work", k, None, edits, classifier_config=None,
                       detector_overrides=detector_overrides)
    return {**result, "dataset": "kvasir-seg", "n_images": len(ds.images), "k": k, "noise_fraction": fraction}
