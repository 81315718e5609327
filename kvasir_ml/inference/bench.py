"""Streaming predict against a bare forward pass of the same model, in one process
(``scripts/bench_predict.py``; the ratio the archive-scale predict is held to).

* bare: the classifier's forward pass alone on inputs already prepared and in memory
  (same batch size and device), no decode, no post-processing, no output, each batch started
  before the previous one's outputs are read (as the stream runs it); on a CPU timed on the
  stream's plan (lanes: ``cpu_threads``) and as one forward of the whole batch at each thread
  count, and the fastest is the baseline;
* stream: ``inference.stream.predict_to_jsonl`` over the image files, everything included
  (decode, inset, input preparation in workers, the model, calibration, JSON Lines writes).

The bare pass is timed before and after the stream and averaged, so a machine whose load
changes during the run biases neither side. Model loading and worker start-up are outside
neither: the stream's seconds run from its first batch request to its last flush.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from kvasir_ml.cpu_threads import CpuPlan, thread_plans
from kvasir_ml.data.inset import detect_inset
from kvasir_ml.inference.combined import Predictor
from kvasir_ml.inference.stream import predict_to_jsonl


def untrained_checkpoint(path: str | Path, arch: str = "resnet50", image_size_px: int = 224,
                         inset_mode: str = "branch") -> Path:
    """A single-label classifier checkpoint with random weights (identity calibration, 0.5
    thresholds): the real model and loading path, for throughput and tests (its scores mean nothing)."""
    from kvasir_ml.evaluation.calibration import Calibration
    from kvasir_ml.models.classifier import KvasirClassifier
    from kvasir_ml.taxonomy import load_taxonomy
    from kvasir_ml.train.checkpoint import save_checkpoint
    from kvasir_ml.train.config import load_classifier_config

    cfg = load_classifier_config(None, [f"model.arch={arch}", f"data.image_size_px={image_size_px}",
                                        f"model.inset_mode={inset_mode}", "model.task=singlelabel"])
    tax = load_taxonomy()
    classes = list(tax.source(cfg.data.class_source).classes)
    torch.manual_seed(0)
    model = KvasirClassifier(arch, len(classes), inset_mode, cfg.model.branch_features, cfg.model.dropout)
    return save_checkpoint(path, {
        "model": model.state_dict(), "config": cfg.model_dump(mode="json"), "label_names": list(tax.label_names),
        "class_names": classes, "thresholds": [0.5] * len(tax.label_names), "taxonomy_version": tax.version,
        "calibration": Calibration.identity("singlelabel", len(classes)).to_state(), "epoch": 0})


def write_frames(folder: str | Path, n: int, width_px: int = 720, height_px: int = 576, seed: int = 0) -> list[Path]:
    """``n`` distinct JPEG frames of the Kvasir v2 size (random smooth colour fields)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"frame{i:06d}.jpg"
        if not path.exists():
            small = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
            Image.fromarray(small).resize((width_px, height_px), Image.Resampling.BILINEAR).save(path, quality=85)
        paths.append(path)
    return paths


def bare_forward_img_s(predictor: Predictor, sample: list[Path], n_images: int, batch: int) -> tuple[float, str]:
    """The classifier's forward pass alone on the stream's plan (``Predictor.classifier_plan``: on
    a CPU, lanes) and, on a CPU, as one forward of the whole batch at each thread count: the
    fastest one's images per second and its plan (the strictest baseline: the stream is held to
    the best the bare model does on this machine now, however it is run)."""
    from kvasir_ml.data.images import load_rgb
    from kvasir_ml.train.classify import classifier_inputs, collate_inputs

    assert predictor.classifier is not None and predictor.device is not None, "the bare pass needs a classifier"
    items = []
    for path in sample[:batch]:
        rgb = load_rgb(path)
        items.append(classifier_inputs(predictor.classifier[1], rgb, detect_inset(rgb)))
    inputs = collate_inputs(items, predictor.device)
    candidates: list[CpuPlan | None] = [predictor.classifier_plan]
    if predictor.device.type == "cpu":
        candidates = list(dict.fromkeys([*candidates, *thread_plans()]))
    rates = {plan: _bare_img_s(predictor, plan, inputs, n_images // len(candidates)) for plan in candidates}
    best = max(rates, key=rates.__getitem__)
    return rates[best], plan_name(best)


def plan_name(plan: CpuPlan | None) -> str:
    """``CpuPlan``'s "lanes x threads", or "one call" (no plan: a GPU)."""
    return "one call" if plan is None else str(plan)


@torch.no_grad()
def _bare_img_s(predictor: Predictor, plan: CpuPlan | None, inputs: dict[str, torch.Tensor], n_images: int) -> float:
    """Images per second of the classifier's forward pass alone on ``plan``, on one batch of
    inputs prepared beforehand; each batch is started before the previous one's outputs are
    read, as the stream does (``Lanes.submit``: no core idles between batches)."""
    batch = len(next(iter(inputs.values())))
    predictor.start_forward(inputs, plan)()  # warm-up
    steps = max(1, n_images // batch)
    _sync(predictor.device)
    t0 = time.perf_counter()
    outputs = predictor.start_forward(inputs, plan)
    for _ in range(steps - 1):
        started = predictor.start_forward(inputs, plan)
        outputs().float().cpu()  # the stream reads its outputs back too
        outputs = started
    outputs().float().cpu()
    _sync(predictor.device)
    return steps * batch / (time.perf_counter() - t0)


def _sync(device: Any) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def predict_throughput(checkpoint: str | Path, images: list[Path], out_path: str | Path, device: str = "auto",
                       workers: int | None = None, batch: int = 32, repeats: int = 1) -> dict[str, Any]:
    """Bare forward, stream, bare forward again (``repeats`` times, a fresh output each time);
    images/s of each and the ratio stream / bare: the median run's, with every run's ratio and
    figures (``runs``: which side moved in an outlying run, at what load)."""
    predictor = Predictor(checkpoint, device=device)
    runs = [_one_run(predictor, images, Path(out_path), workers, batch) for _ in range(max(1, repeats))]
    res = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
    each = [{k: r[k] for k in ("ratio", "stream_img_s", "bare_before_img_s", "bare_after_img_s", "load_1m_after")}
            for r in runs]
    return {**res, "repeats": len(runs), "ratios": [r["ratio"] for r in runs], "runs": each}


def _one_run(predictor: Predictor, images: list[Path], out_path: Path, workers: int | None,
             batch: int) -> dict[str, Any]:
    out_path.unlink(missing_ok=True)
    bare_before, plan_before = bare_forward_img_s(predictor, images, len(images), batch)
    rep = predict_to_jsonl(predictor, images, out_path, workers=workers, batch_images=batch, progress=False)
    bare_after, plan_after = bare_forward_img_s(predictor, images, len(images), batch)
    bare = (bare_before + bare_after) / 2
    n_lines = sum(1 for _ in open(out_path, encoding="utf-8"))
    return {"n_images": len(images), "n_lines": n_lines, "n_failed": rep.n_failed, "batch": batch,
            "workers": workers, "device": str(predictor.device), "threads": torch.get_num_threads(),
            "bare_plan_before_after": [plan_before, plan_after],
            "stream_plan": plan_name(predictor.classifier_plan),
            "stream_img_s": round(rep.images_per_s, 2), "bare_img_s": round(bare, 2),
            "bare_before_img_s": round(bare_before, 2), "bare_after_img_s": round(bare_after, 2),
            "ratio": round(rep.images_per_s / bare, 3), "load_1m_after": round(os.getloadavg()[0], 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
