"""Classifier training throughput: the project's pipeline vs a bare PyTorch loop, same process.

Project: synthetic images -> ImageCache -> ClassifierDataset (inset masking/cropping +
augmentation) -> DataLoader -> ``train_one_epoch`` (model, loss, AdamW, one-cycle).
Bare: the same model class on random uint8 tensors already on the device, same batch,
precision and memory format, a plain forward/backward/step loop. The ratio is what the
data path and loop bookkeeping cost (target >= 0.9 on a GPU).

    python scripts/bench_train.py                     # CPU, small resolution
    python scripts/bench_train.py --device cuda --size 224 --batch 128 --bf16 --channels-last --workers 8
    python scripts/bench_train.py --json              # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import torch

from kvasir_ml.models.classifier import build_model
from kvasir_ml.models.losses import build_loss
from kvasir_ml.train.config import ClassifierConfig
from kvasir_ml.train.loop import train_one_epoch
from kvasir_ml.train.prepare import make_loaders, prepare_data
from kvasir_ml.train.run import make_optimizer, make_scheduler, resolve_device


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--arch", default="resnet50", choices=["resnet50", "resnet18"])
    p.add_argument("--size", type=int, default=64, help="image side in px")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side")
    p.add_argument("--inset-mode", default="branch", choices=["raw", "masked", "branch"])
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile both models (CUDA)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args()


def bench_config(args: argparse.Namespace, n_images: int) -> ClassifierConfig:
    return ClassifierConfig.model_validate({
        "data": {"canonical": "synthetic", "synthetic_n": n_images, "image_size_px": args.size,
                 "fractions": [0.9, 0.05, 0.05]},
        "model": {"arch": args.arch, "inset_mode": args.inset_mode},
        "runtime": {"device": args.device, "amp": args.bf16, "channels_last": args.channels_last,
                    "workers": args.workers, "batch_size": args.batch, "progress": False},
        "tracking": {"mode": "disabled"},
    })


def _prepare_model(cfg: ClassifierConfig, n_out: int, device: torch.device, compile_: bool) -> tuple:
    model = build_model(cfg.model, n_out).to(device)
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile_ and device.type == "cuda" else model
    return model, net


def project_img_s(cfg: ClassifierConfig, run_dir: Path, device: torch.device,
                  args: argparse.Namespace, timed_steps: int | None = None) -> tuple[dict, int]:
    """(``train_one_epoch`` stats of the timed steps, number of labels) after warm-up steps."""
    data = prepare_data(cfg, run_dir)
    loader, _, _ = make_loaders(cfg, data, device)
    model, net = _prepare_model(cfg, len(data.label_names), device, args.compile)
    loss_fn = build_loss(cfg.loss, "multilabel", data.records["train"].y_labels).to(device)
    optimizer = make_optimizer(model, 1e-3, 0.1, 1e-4)
    scheduler = make_scheduler(optimizer, cfg, 10_000)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    kw = dict(task="multilabel", amp=args.bf16, channels_last=args.channels_last, progress=False)
    train_one_epoch(net, itertools.islice(batches, args.warmup), loss_fn, optimizer, scheduler, device, **kw)
    steps = args.steps if timed_steps is None else timed_steps
    stats = train_one_epoch(net, itertools.islice(batches, steps), loss_fn, optimizer, scheduler, device, **kw)
    return stats, len(data.label_names)


def bare_img_s(cfg: ClassifierConfig, n_out: int, device: torch.device, args: argparse.Namespace) -> float:
    model, net = _prepare_model(cfg, n_out, device, args.compile)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    b, s, k = args.batch, args.size, cfg.model.branch_size_px
    inputs = {"image": torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, device=device).contiguous(memory_format=fmt)}
    if cfg.model.inset_mode == "branch":
        inputs["inset"] = torch.randint(0, 256, (b, 3, k, k), dtype=torch.uint8, device=device)
        inputs["inset_state"] = torch.eye(3, device=device)[torch.randint(0, 3, (b,), device=device)]
    y = torch.randint(0, 2, (b, n_out), device=device).float()

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16 and device.type == "cuda"):
            logits = net(**inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss.item()  # sync
    return args.steps * b / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    n_images = int((args.warmup + args.steps) * args.batch / 0.9) + 16
    cfg = bench_config(args, min(n_images, 2000))
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        data_dir = Path(tmp)
        # Build the data once (untimed), then bracket the project run by two bare runs: on a
        # shared machine the load drifts, and the mean of before/after cancels a linear drift.
        _, n_out = project_img_s(cfg, data_dir, device, args, timed_steps=1)
        bare_before = bare_img_s(cfg, n_out, device, args)
        stats, _ = project_img_s(cfg, data_dir, device, args)
        bare_after = bare_img_s(cfg, n_out, device, args)
    project, bare = stats["img_s"], (bare_before + bare_after) / 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    result = {
        "device": name, "project_img_s": round(project, 2), "bare_img_s": round(bare, 2),
        "ratio": round(project / bare, 3),
        "bare_img_s_before_after": [round(bare_before, 2), round(bare_after, 2)], "project_data_time_s": round(stats["data_time_s"], 3),
        "project_step_time_s": round(stats["step_time_s"], 3), "arch": args.arch, "size_px": args.size, "batch": args.batch,
        "steps": args.steps, "inset_mode": args.inset_mode, "workers": args.workers, "bf16": args.bf16,
        "channels_last": args.channels_last, "compile": args.compile, "torch": str(torch.__version__),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"device {name}: project {project:.1f} img/s (data {stats['data_time_s']:.2f} s, step "
              f"{stats['step_time_s']:.2f} s), bare {bare:.1f} img/s, ratio {project / bare:.3f}")


if __name__ == "__main__":
    main()
