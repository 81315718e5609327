"""Images/s of the data path: naive PIL loader vs the decode-once cache (cold and warm).

    .venv/bin/python scripts/bench_data.py [--n 200] [--size 224] [--json OUT.json]

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

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "kvasir-seg" / "images"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of images")
    parser.add_argument("--n", type=int, default=200, help="number of images")
    parser.add_argument("--size", type=int, default=224, help="square output side in px")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent (needs ../shared/data/kvasir-seg)")
        return 0
    paths = sorted(args.data.glob("*.jpg"))[: args.n]
    result = run(paths, args.size)
    for key in ("naive_pil_img_s", "cache_cold_img_s", "cache_warm_img_s", "warm_over_naive", "cold_over_naive"):
        print(f"{key:18s} {result[key]}")
    if args.json:
        from kvasir_ml.io import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
