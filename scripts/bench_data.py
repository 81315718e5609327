"""Images/s of the data path: naive PIL loader vs the decode-once cache (cold and warm), or the train loader.

    .venv/bin/python scripts/bench_data.py [--n 200] [--size 224] [--json OUT.json]
    .venv/bin/python scripts/bench_data.py --loader-only --json      # last line: {"loader_img_s": ..., ...}

``--loader-only`` measures the classifier's train DataLoader alone (``kvasir_ml.train.bench.
loader_throughput``): warm cache and pack, 224 px, the default runtime (workers, batch size)
and inset mode, on the Kvasir-SEG images (synthetic images when they are absent).

Runs on the real Kvasir-SEG images in ../shared/data (skips with a message when absent),
in one process, so the numbers compare per-core throughput:

* naive — ``PIL.Image.open(p).convert("RGB").resize((S, S))`` every time (what a plain
  torchvision ImageFolder-style loader does each epoch);
* cold  — ``ImageCache.get`` on an empty cache: hash + draft decode + resize + write .npy;
* warm  — ``ImageCache.get`` again from a fresh instance (what every later epoch pays).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("KVASIR_SHARED_DATA", REPO.parent / "shared" / "data")) / "kvasir-seg" / "images"


def _rate(fn, paths) -> tuple[float, float]:
    """(images/s, seconds) of ``fn`` over ``paths``."""
    start = time.perf_counter()
    for p in paths:
        fn(p)
    elapsed = time.perf_counter() - start
    return len(paths) / elapsed, elapsed


def run(paths: list[Path], size_px: int) -> dict:
    from kvasir_ml.data.cache import ImageCache

    def naive(p: Path) -> np.ndarray:
        with Image.open(p) as img:
            return np.asarray(img.convert("RGB").resize((size_px, size_px), Image.Resampling.BILINEAR))

    naive(paths[0])  # warm imports and the page cache, so the first image is not charged
    naive_rate, naive_s = _rate(naive, paths)
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        cold_rate, cold_s = _rate(ImageCache(tmp, size_px).get, paths)
        warm_cache = ImageCache(tmp, size_px)
        warm_rate, warm_s = _rate(warm_cache.get, paths)
        assert warm_cache.decodes == 0
        mib = sum(f.stat().st_size for f in Path(tmp).rglob("*.npy")) / 2**20
    return {
        "n_images": len(paths),
        "size_px": size_px,
        "naive_pil_img_s": round(naive_rate, 1),
        "cache_cold_img_s": round(cold_rate, 1),
        "cache_warm_img_s": round(warm_rate, 1),
        "warm_over_naive": round(warm_rate / naive_rate, 2),
        "cold_over_naive": round(cold_rate / naive_rate, 2),
        "seconds": {"naive": round(naive_s, 3), "cold": round(cold_s, 3), "warm": round(warm_s, 3)},
        "cache_mib": round(mib, 2),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(), "processes": 1,
                    "load_avg_1min": round(os.getloadavg()[0], 2)},
    }


def loader_only(data_dir: Path, size_px: int, workers: int | None, batch: int | None, seconds: float) -> dict:
    """The train loader's img/s on Kvasir-SEG (indexed into a temporary canonical file) or synthetic data."""
    from kvasir_ml.train.bench import bench_config, loader_throughput
    from kvasir_ml.train.config import RuntimeConfig

    rt = RuntimeConfig()
    workers = rt.workers if workers is None else workers
    batch = rt.batch_size if batch is None else batch
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        source = "synthetic (400 images)"
        extra: dict[str, Any] = {"canonical": "synthetic"}
        if (data_dir / "images").is_dir():
            from kvasir_ml.data.sources import index_kvasir_seg

            canonical = Path(tmp) / "kvasir-seg.coco.json"
            index_kvasir_seg(data_dir).dataset.save(canonical)
            source, extra = f"kvasir-seg ({data_dir})", {"canonical": str(canonical), "root": str(data_dir)}
        cfg = bench_config(size_px, batch, workers, 400, inset_mode="branch", **extra)
        result = loader_throughput(cfg, Path(tmp) / "run", min_seconds=seconds)
    result.update(source=source, cpu_count=os.cpu_count(), load_avg_1min=round(os.getloadavg()[0], 2),
                  python=platform.python_version())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of images")
    parser.add_argument("--n", type=int, default=200, help="number of images")
    parser.add_argument("--size", type=int, default=224, help="square output side in px")
    parser.add_argument("--json", nargs="?", const="-", help="also write the result here (no value: print it as "
                        "the last line)")
    parser.add_argument("--loader-only", action="store_true", help="measure the train DataLoader alone")
    parser.add_argument("--workers", type=int, help="loader workers (--loader-only; default: the runtime default)")
    parser.add_argument("--batch", type=int, help="batch size (--loader-only; default: the runtime default)")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds (--loader-only)")
    args = parser.parse_args(argv)
    if args.loader_only:
        result = loader_only(args.data.parent, args.size, args.workers, args.batch, args.seconds)
        print(f"loader {result['loader_img_s']} img/s at {result['image_size']} px, {result['workers']} workers, "
              f"batch {result['batch_size']} ({result['source']}, load {result['load_avg_1min']})")
        if args.json:
            import json

            if args.json != "-":
                from kvasir_ml.io import atomic_write_json

                atomic_write_json(Path(args.json), result)
            print(json.dumps(result))
        return 0
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent (needs ../shared/data/kvasir-seg)")
        return 0
    paths = sorted(args.data.glob("*.jpg"))[: args.n]
    result = run(paths, args.size)
    for key in ("naive_pil_img_s", "cache_cold_img_s", "cache_warm_img_s", "warm_over_naive", "cold_over_naive"):
        print(f"{key:18s} {result[key]}")
    if args.json and args.json != "-":
        from kvasir_ml.io import atomic_write_json

        atomic_write_json(Path(args.json), result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
