"""Cost of the data pipeline as the data grows (``scripts/bench_scale.py``): seconds and peak RSS
per stage on synthetic 720x576 video frames (``data.video_frames``) at several sizes.

Stages, each in a fresh process so its peak RSS is its own (``ru_maxrss`` of the process and,
separately, the largest of its pool workers):

* ``index``   — ``kvasir-ml data index kvasir-v2`` (decode, inset, sha256 per image);
* ``hashes``  — perceptual hashes on a cold hash store, all-pairs comparison, grouping;
  ``hashes_warm`` is the same call again (what a re-split pays);
* ``split``   — ``make_splits`` with those groups;
* ``cache``   — the decode-once cache warmed for every image and one pack per split;
* ``loader``  — the training DataLoader over the train split (no model): a first epoch that
  starts the workers (``first_epoch_s``, reported apart), then whole epochs,
  timed, until ``LOADER_MIN_IMAGES`` images: the steady cost every later epoch of a run pays,
  over the same number of images at every size;
* ``predict`` — ``kvasir_ml.inference.combined.Predictor`` (tiny classifier) over every image.

Per-image cost = seconds / images the stage handles (the loader: train images). Setup
(writing frames, training the tiny checkpoint, building the loader) is not timed. ``cpu_s`` is
the CPU time (user + system) of the stage's process and its workers over the same window: on a
shared machine the wall clock also measures the other jobs, the CPU time much less so.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

STAGES = ("index", "hashes", "hashes_warm", "split", "cache", "loader", "predict")
CACHE_SIZE_PX = 128  # training input side for the cache, loader and tiny model
BATCH = 64
LOADER_MIN_IMAGES = 16_384  # whole loader epochs are timed until at least this many images: 1k is not a 0.1 s blip


def _rss_mb() -> tuple[float, float]:
    """Peak RSS (MiB) of this process and of its largest finished child (Linux: ru_maxrss in KiB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process, its finished children and its live
    multiprocessing children (DataLoader workers, read from Linux ``/proc``)."""
    own, done = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + done.ru_utime + done.ru_stime
    import multiprocessing

    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _paths(work: Path) -> dict[str, Path]:
    return {"root": work / "frames", "canonical": work / "canonical.json", "near": work / "near.json",
            "split": work / "split.json", "cache": work / "cache", "hash_store": work / "phash-store",
            "ckpt": work.parent / "tiny-model" / "checkpoints" / "last.pt"}


def _index(p: dict[str, Path]) -> int:
    from kvasir_ml.data.sources import INDEXERS

    result = INDEXERS["kvasir-v2"](p["root"])
    result.dataset.save(p["canonical"])
    return len(result.dataset.images)


def _hashes(p: dict[str, Path]) -> int:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.near_duplicates import near_duplicate_groups

    names = [img["file_name"] for img in load_canonical(p["canonical"]).images]
    near = near_duplicate_groups(names, p["root"], cache_dir=p["hash_store"])
    p["near"].write_text(json.dumps({"info": near.info, "stats": near.stats}))
    return len(names)


def _split(p: dict[str, Path]) -> int:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.data.near_duplicates import NearDuplicates
    from kvasir_ml.data.splits import make_splits

    ds = load_canonical(p["canonical"])
    info = json.loads(p["near"].read_text())["info"]
    near = NearDuplicates({f: f"phash:{g[0]}" for g in info["groups"] for f in g}, info)
    make_splits(ds, seed=0, fractions=(0.8, 0.1, 0.1), near_duplicates=near).save(p["split"])
    return len(ds.images)


def _split_paths(p: dict[str, Path]) -> dict[str, list[Path]]:
    from kvasir_ml.data.splits import load_split

    return {name: [p["root"] / f for f in files] for name, files in load_split(p["split"]).splits.items() if files}


def _cache(p: dict[str, Path]) -> int:
    from kvasir_ml.data.cache import ImageCache

    cache = ImageCache(p["cache"], CACHE_SIZE_PX)
    by_split = _split_paths(p)
    cache.warm([q for paths in by_split.values() for q in paths])
    for paths in by_split.values():
        cache.pack(paths)
    return sum(len(v) for v in by_split.values())


def _loader_config(p: dict[str, Path]):
    from kvasir_ml.train.bench import bench_config

    cfg = bench_config(CACHE_SIZE_PX, BATCH, workers=2, n_images=0, arch="resnet18", inset_mode="masked",
                       cache_dir=str(p["cache"]), canonical=str(p["canonical"]), root=str(p["root"]))
    cfg.data.split_file = str(p["split"])
    return cfg


def _loader(p: dict[str, Path]) -> dict[str, Any]:
    import torch

    from kvasir_ml.train.prepare import make_loaders, prepare_data

    run = p["cache"].parent / "loader-run"
    data = prepare_data(_loader_config(p), run)  # cache hits: not timed
    loader, _, _ = make_loaders(_loader_config(p), data, torch.device("cpu"))
    start = time.perf_counter()
    n_first = sum(int(batch["image"].shape[0]) for batch in loader)  # starts the workers
    first_s = time.perf_counter() - start
    cpu, start, n, epochs = _cpu_s(), time.perf_counter(), 0, 0
    while n < LOADER_MIN_IMAGES:  # whole epochs; persistent workers: no restart
        n += sum(int(batch["image"].shape[0]) for batch in loader)
        epochs += 1
    seconds, cpu = time.perf_counter() - start, _cpu_s() - cpu
    return {"n_images": n, "seconds": seconds, "cpu_s": cpu, "timed_epochs": epochs, "first_epoch_s": round(first_s, 3),
            "first_epoch_ms_per_image": round(1000 * first_s / max(n_first, 1), 3)}


def ensure_tiny_checkpoint(ckpt: Path) -> Path:
    """A tiny multi-label classifier at ``CACHE_SIZE_PX`` (1 epoch on 64 synthetic images), trained once."""
    if ckpt.is_file():
        return ckpt
    from kvasir_ml.train.config import load_classifier_config
    from kvasir_ml.train.run import train_classifier

    repo = Path(__file__).resolve().parents[2]
    cfg = load_classifier_config(repo / "configs" / "classifier_multilabel_tiny.yaml",
                                 ["optim.epochs=1", "data.synthetic_n=64", f"data.image_size_px={CACHE_SIZE_PX}",
                                  "model.inset_mode=masked", "tracking.mode=disabled", "runtime.progress=false"])
    train_classifier(cfg, ckpt.parent.parent)
    return ckpt


def _predict(p: dict[str, Path]) -> dict[str, Any]:
    from kvasir_ml.data.coco import load_canonical
    from kvasir_ml.inference.combined import Predictor

    predictor = Predictor(classifier_ckpt=ensure_tiny_checkpoint(p["ckpt"]), device="cpu")
    paths = [p["root"] / img["file_name"] for img in load_canonical(p["canonical"]).images]
    cpu, start = _cpu_s(), time.perf_counter()
    failed = sum(1 for entry in predictor(paths) if "error" in entry)
    seconds, cpu = time.perf_counter() - start, _cpu_s() - cpu
    if failed:
        raise RuntimeError(f"predict failed on {failed} of {len(paths)} frames")
    return {"n_images": len(paths), "seconds": seconds, "cpu_s": cpu}


_IMPORTS = ("kvasir_ml.data.coco", "kvasir_ml.data.sources", "kvasir_ml.data.near_duplicates", "kvasir_ml.data.splits",
            "kvasir_ml.data.phash_cache", "kvasir_ml.data.cache", "imagehash", "scipy.sparse.csgraph",
            "iterstrat.ml_stratifiers", "kvasir_ml.train.prepare", "kvasir_ml.inference.combined", "kvasir_ml.train.classify")
_TIMED: dict[str, Callable[[dict[str, Path]], int]] = {
    "index": _index, "hashes": _hashes, "hashes_warm": _hashes, "split": _split, "cache": _cache}
_SELF_TIMED: dict[str, Callable[[dict[str, Path]], dict[str, Any]]] = {"loader": _loader, "predict": _predict}


def run_stage(stage: str, work: Path) -> dict[str, Any]:
    """Run one stage in this process: ``{"stage", "n_images", "seconds", "peak_rss_mb", "workers_peak_rss_mb"}``."""
    p = _paths(work)
    for module in _IMPORTS:  # imported before the clock starts: a stage's time is its work
        __import__(module)
    if stage in _SELF_TIMED:
        timed = _SELF_TIMED[stage](p)
    else:
        cpu, start = _cpu_s(), time.perf_counter()
        n = _TIMED[stage](p)
        timed = {"n_images": n, "seconds": time.perf_counter() - start, "cpu_s": _cpu_s() - cpu}
    own, workers = _rss_mb()
    out = {"stage": stage, **timed, "seconds": round(timed["seconds"], 3), "cpu_s": round(timed["cpu_s"], 3),
           "peak_rss_mb": round(own, 1), "workers_peak_rss_mb": round(workers, 1)}
    if stage.startswith("hashes"):
        recorded = json.loads(p["near"].read_text())
        info = recorded["info"]
        out.update(recorded["stats"], n_groups=info["n_groups"], largest_group=info["largest_group"],
                   n_large_groups=len(info["large_groups"]), n_pairs=info["n_pairs"])
    return out


def _stage_in_subprocess(stage: str, work: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "kvasir_ml.train.bench_scale", stage, str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} at {work} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# What each stage writes (removed before the stage is timed, so it starts cold) and, for the
# stages later ones read, the file whose absence makes an unselected stage run as untimed setup.
_CLEARS = {"index": ("canonical",), "hashes": ("hash_store", "near"), "split": ("split",), "cache": ("cache",)}
_MAKES = {"index": "canonical", "hashes": "near", "split": "split", "cache": "cache"}


def measure_size(n: int, work_root: Path, log: Callable[[str], None] = print,
                 stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
    """Write ``n`` frames under ``work_root/n<n>`` and run ``stages`` on them (in ``STAGES`` order).

    A selected stage starts cold (its outputs removed). An unselected stage before the last
    selected one runs untimed only when a later stage needs its output and it is missing.
    """
    from kvasir_ml.data.video_frames import write_video_frames

    import shutil

    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")
    work = work_root / f"n{n}"
    start = time.perf_counter()
    if not (work / "frames").is_dir():
        write_video_frames(work / "frames", n, seed=0)
    for stage in stages:
        for stale in _CLEARS.get(stage, ()):
            path = _paths(work)[stale]
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    shutil.rmtree(work / "loader-run", ignore_errors=True)
    out: dict[str, Any] = {"n": n, "frames_written_s": round(time.perf_counter() - start, 1), "stages": {}}
    last = max(STAGES.index(s) for s in stages)
    for stage in STAGES[:last + 1]:
        if stage not in stages:
            if stage in _MAKES and not _paths(work)[_MAKES[stage]].exists():
                log(f"n={n} {stage}: setup (untimed)")
                _stage_in_subprocess(stage, work)
            continue
        result = _stage_in_subprocess(stage, work)
        result["per_image_ms"] = round(1000 * result["seconds"] / max(result["n_images"], 1), 3)
        result["cpu_per_image_ms"] = round(1000 * result["cpu_s"] / max(result["n_images"], 1), 3)
        out["stages"][stage] = result
        log(f"n={n} {stage}: {result['seconds']:.1f} s, {result['per_image_ms']:.2f} ms/img, "
            f"cpu {result['cpu_per_image_ms']:.2f} ms/img, peak RSS {result['peak_rss_mb']:.0f} MiB (workers {result['workers_peak_rss_mb']:.0f})")
    return out


def compare_seconds(n: int, max_distance: int = 12, seed: int = 0) -> float:
    """Seconds of the all-pairs comparison alone on ``n`` random 64-bit hashes."""
    import numpy as np

    from kvasir_ml.data.near_duplicates import close_pair_arrays

    hashes = np.random.default_rng(seed).integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    start = time.perf_counter()
    close_pair_arrays(hashes, max_distance)
    return time.perf_counter() - start


def summarize(sizes: list[dict[str, Any]], target_n: int, compare_target_s: float | None) -> dict[str, Any]:
    """Per-stage ratio of per-image cost (largest size / smallest) and a 110k extrapolation.

    The extrapolation fits seconds = a + b*n per stage (the loader: seconds per timed epoch)
    by least squares over the measured sizes (every stage is linear by construction except the comparison inside ``hashes``,
    which is N^2/2 popcounts: its measured time at ``target_n`` is added when given).
    """
    import numpy as np

    small, large = sizes[0], sizes[-1]
    measured = [s for s in STAGES if s in small["stages"]]
    ratio = {s: round(large["stages"][s]["per_image_ms"] / max(small["stages"][s]["per_image_ms"], 1e-9), 2)
             for s in measured}
    cpu_ratio = {s: round(large["stages"][s]["cpu_per_image_ms"] / max(small["stages"][s]["cpu_per_image_ms"], 1e-9), 2)
                 for s in measured if "cpu_per_image_ms" in small["stages"][s]}
    ns = np.array([r["n"] for r in sizes], dtype=float)
    extrapolated = {}
    for stage in measured:
        secs = np.array([r["stages"][stage]["seconds"] / r["stages"][stage].get("timed_epochs", 1) for r in sizes])
        if stage.startswith("hashes"):  # the linear part; the quadratic comparison is measured apart
            secs = secs - np.array([r["stages"][stage].get("compare_s", 0.0) for r in sizes])
        b, a = np.polyfit(ns, secs, 1) if len(ns) > 1 else (secs[0] / ns[0], 0.0)
        total = a + b * target_n + (compare_target_s or 0.0) * stage.startswith("hashes")
        rss = np.array([r["stages"][stage]["peak_rss_mb"] for r in sizes])
        rss_b, rss_a = np.polyfit(ns, rss, 1) if len(ns) > 1 else (0.0, rss[0])
        extrapolated[stage] = {"seconds": round(float(total), 1), "peak_rss_mb": round(float(rss_a + rss_b * target_n))}
    return {"per_image_ratio_largest_over_smallest": ratio,
            "flat_within_1_5x": {s: r <= 1.5 for s, r in ratio.items()},
            "cpu_per_image_ratio_largest_over_smallest": cpu_ratio,
            "measurement": "wall seconds and CPU seconds (user + system, workers included) per image; the loader "
                           f"is whole epochs after the first (which starts the workers: first_epoch_s) until "
                           f">= {LOADER_MIN_IMAGES} images",
            "extrapolated": {"n": target_n, "stages": extrapolated,
                             "compare_s_measured_at_n": round(compare_target_s, 1) if compare_target_s else None}}


def plot_scale(sizes: list[dict[str, Any]], summary: dict[str, Any], out_png: Path, note: str) -> None:
    """Per-image milliseconds of every stage against the number of images (log x), with the
    110k extrapolation as open markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    target = summary["extrapolated"]
    for stage in (s for s in STAGES if s in sizes[0]["stages"]):
        ns = [r["n"] for r in sizes]
        ms = [r["stages"][stage]["per_image_ms"] for r in sizes]
        line, = ax.plot(ns, ms, "o-", label=stage)
        ax.plot([ns[-1], target["n"]], [ms[-1], 1000 * target["stages"][stage]["seconds"] / target["n"]], ":",
                color=line.get_color())
        ax.plot([target["n"]], [1000 * target["stages"][stage]["seconds"] / target["n"]], "o", mfc="none",
                color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("images (synthetic 720x576 JPEG video frames)")
    ax.set_ylabel("ms per image (wall clock)")
    ax.set_title(f"Data pipeline cost per image; open markers: fit at {target['n']:,}", fontsize=10)
    ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize=7, va="bottom")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":  # one stage, run by _stage_in_subprocess
    import logging

    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(run_stage(sys.argv[1], Path(sys.argv[2]))))
