"""Classifier training throughput: the project's pipeline vs a bare PyTorch loop, same process, with MFU.

Project: synthetic images -> ImageCache pack -> ClassifierDataset (inset masking/cropping)
-> DataLoader -> device augmentation -> ``train_one_epoch`` (model, loss, AdamW, one-cycle).
Bare: the same model class on random uint8 tensors already on the device, same batch,
precision, memory format and compile setting, a plain forward/backward/step loop. The ratio
is what the data path and loop bookkeeping cost (target >= 0.9 on a GPU). MFU = achieved
model FLOP/s (fwd+bwd, counted with torch.utils.flop_counter) over the device's dense bf16
peak. Warm-up steps (worker start, autotuning, compilation) are not timed.

    python scripts/bench_train.py                     # CPU, small resolution
    python scripts/bench_train.py --device cuda --size 224 --batch 256 --bf16 --channels-last --workers 12 [--compile]
    python scripts/bench_train.py --json              # one JSON object on stdout (last line)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from kvasir_ml.train.bench import bench_config, train_throughput
from kvasir_ml.device import resolve_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--arch", default="resnet50", choices=["resnet50", "resnet18"])
    p.add_argument("--size", type=int, default=64, help="image side in px")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per side (default 2, 5 with --compile)")
    p.add_argument("--n-images", type=int, default=512, help="synthetic images (the sampler cycles through them)")
    p.add_argument("--inset-mode", default="branch", choices=["raw", "masked", "branch"])
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--peak-tflops", type=float, help="device peak for MFU (default: from the GPU's name)")
    p.add_argument("--cache-dir", help="image cache to reuse between invocations (default: a temporary one)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    warmup = args.warmup if args.warmup is not None else (5 if args.compile else 2)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        cfg = bench_config(args.size, args.batch, args.workers, args.n_images, device=str(device), arch=args.arch,
                           inset_mode=args.inset_mode, bf16=args.bf16, channels_last=args.channels_last,
                           cache_dir=args.cache_dir)
        result = train_throughput(cfg, Path(tmp), args.steps, warmup, args.compile, args.peak_tflops)
    if args.json:
        print(json.dumps(result))
    else:
        mfu = f", MFU {result['mfu_project']:.1%} vs bare {result['mfu_bare']:.1%}" if result["mfu_project"] else ""
        print(f"device {result['device']}: project {result['project_img_s']:.1f} img/s (data "
              f"{result['project_data_time_s']:.2f} s, step {result['project_step_time_s']:.2f} s), bare "
              f"{result['bare_img_s']:.1f} img/s, ratio {result['ratio']:.3f}{mfu}; "
              f"{result['flops_per_image'] / 1e9:.2f} GFLOP/img fwd+bwd")
    return result


if __name__ == "__main__":
    main()
