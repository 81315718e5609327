"""Throughput measurements behind ``scripts/bench_data.py``, ``scripts/bench_train.py`` and the GPU check.

* ``loader_throughput``: the classifier's train loader alone (warm cache and pack, the
  run's workers), batches pulled as fast as it delivers them;
* ``train_throughput``: the project's training step (loader -> device augmentation ->
  ``train_one_epoch``) against a bare PyTorch loop (the same model on random uint8 tensors
  already on the device, same batch, precision, memory format and compile setting), in one
  process, with model FLOPs utilisation (MFU).

Warm-up steps (worker start, cuDNN autotuning, ``torch.compile``) are never timed. The
project side draws from a sampler long enough for warm-up plus timed steps in ONE pass, so
the timing has no epoch boundary in it (a pass restart drains the prefetch queue).
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import RandomSampler

from kvasir_ml.models.classifier import KvasirClassifier, build_model
from kvasir_ml.models.losses import build_loss
from kvasir_ml.train.augment import build_batch_augment
from kvasir_ml.train.config import ClassifierConfig
from kvasir_ml.train.data import ClassifierDataset
from kvasir_ml.train.loop import train_one_epoch
from kvasir_ml.train.prepare import RunData, batch_loader, make_loaders, prepare_data

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched on the device
# name in this order (first hit wins). MFU = achieved model FLOP/s / this peak.
PEAK_BF16_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4),
                    ("H800", 989.4), ("GH200", 989.4), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0),
                    ("L40S", 362.1), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.2),
                    ("RTX 3090", 71.0))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"


def peak_tflops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, or None (CPU, unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def _example_inputs(cfg: ClassifierConfig, batch: int, device: torch.device | str) -> dict[str, torch.Tensor]:
    s, k = cfg.data.image_size_px, cfg.model.branch_size_px
    inputs = {"image": torch.randint(0, 256, (batch, 3, s, s), dtype=torch.uint8, device=device)}
    if cfg.model.inset_mode == "branch":
        inputs["inset"] = torch.randint(0, 256, (batch, 3, k, k), dtype=torch.uint8, device=device)
        inputs["inset_state"] = torch.eye(3, device=device)[torch.randint(0, 3, (batch,), device=device)]
    return inputs


def train_flops_per_image(cfg: ClassifierConfig, n_out: int) -> float:
    """FLOPs of one image's forward + backward pass, counted by ``torch.utils.flop_counter``
    (convolutions and matrix products, the standard MFU convention; element-wise ops and the
    optimizer are not counted). Counted on the ``meta`` device: nothing is computed."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = 2
    with torch.device("meta"):
        model = build_model(cfg.model.model_copy(update={"weights": "none"}), n_out)
        inputs = _example_inputs(cfg, batch, "meta")
    counter = FlopCounterMode(display=False)
    with counter:
        model(**inputs).float().sum().backward()
    return counter.get_total_flops() / batch


def loader_throughput(cfg: ClassifierConfig, run_dir: Path, min_seconds: float = 3.0,
                      device: torch.device | None = None) -> dict[str, Any]:
    """Images/s of the train loader alone, after one untimed pass (workers started, pages cached).

    Args:
        cfg: a classifier config (its data, model.inset_mode and runtime sections are used).
        run_dir: scratch run folder (data, split and cache go there unless the config says otherwise).
        min_seconds: keep pulling passes until at least this long was timed.
        device: decides pinned memory (CUDA); default CPU.
    """
    data = prepare_data(cfg, run_dir)
    loader, _, _ = make_loaders(cfg, data, device or torch.device("cpu"))
    n = sum(int(b["image"].shape[0]) for b in loader)  # warm-up pass
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        images += sum(int(b["image"].shape[0]) for b in loader)
    elapsed = time.perf_counter() - start
    return {"loader_img_s": round(images / elapsed, 1), "image_size": cfg.data.image_size_px,
            "batch_size": cfg.runtime.batch_size, "workers": cfg.runtime.workers,
            "inset_mode": cfg.model.inset_mode, "images_per_pass": n, "timed_images": images,
            "timed_s": round(elapsed, 3), "pin_memory": loader.pin_memory}


def _model(cfg: ClassifierConfig, n_out: int, device: torch.device, compile_: bool) -> tuple[KvasirClassifier, Any]:
    model = build_model(cfg.model, n_out).to(device)
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, (torch.compile(model) if compile_ else model)


def _project_img_s(cfg: ClassifierConfig, data: RunData, device: torch.device, steps: int, warmup: int,
                   compile_: bool) -> dict[str, Any]:
    from kvasir_ml.train.run import make_optimizer, make_scheduler

    rt = cfg.runtime
    ds = ClassifierDataset(data.records["train"], data.packs["train"], cfg.model.inset_mode, cfg.model.branch_size_px)
    sampler = RandomSampler(ds, num_samples=(warmup + steps) * rt.batch_size, generator=torch.Generator().manual_seed(0))
    loader = batch_loader(ds, sampler, rt.batch_size, True, rt.workers, device.type == "cuda")
    model, net = _model(cfg, len(data.label_names), device, compile_)
    loss_fn = build_loss(cfg.loss, "multilabel", data.records["train"].y_labels).to(device)
    optimizer = make_optimizer(model, 1e-3, 0.1, 1e-4)
    scheduler = make_scheduler(optimizer, cfg, 10 * (warmup + steps))
    batches = iter(loader)
    kw: dict[str, Any] = dict(task="multilabel", amp=rt.amp, channels_last=rt.channels_last, progress=False,
              augment=build_batch_augment(cfg.aug))
    train_one_epoch(net, itertools.islice(batches, warmup), loss_fn, optimizer, scheduler, device, **kw)
    stats = train_one_epoch(net, itertools.islice(batches, steps), loss_fn, optimizer, scheduler, device, **kw)
    return stats


def _bare_img_s(cfg: ClassifierConfig, n_out: int, device: torch.device, steps: int, warmup: int,
                compile_: bool) -> float:
    rt = cfg.runtime
    model, net = _model(cfg, n_out, device, compile_)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    fmt = torch.channels_last if rt.channels_last else torch.contiguous_format
    inputs = {k: (v.contiguous(memory_format=fmt) if v.ndim == 4 else v)
              for k, v in _example_inputs(cfg, rt.batch_size, device).items()}
    y = torch.randint(0, 2, (rt.batch_size, n_out), device=device).float()

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=rt.amp and device.type == "cuda"):
            logits = net(**inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    for _ in range(warmup):
        step()
    step().item()  # sync: the timer starts on an idle device
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()
    return steps * rt.batch_size / (time.perf_counter() - start)


def train_throughput(cfg: ClassifierConfig, run_dir: Path, steps: int, warmup: int,
                     compile_: bool = False, peak: float | None = None) -> dict[str, Any]:
    """Project vs bare training img/s, their ratio and MFU (see the module docstring).

    The project run is bracketed by two bare runs (their mean cancels a linear drift of the
    machine's load). ``compile_`` compiles both models (``torch.compile``, on CUDA only, like
    training runs); ``warmup`` must then cover the compilation. ``peak``: dense TFLOP/s override (default ``peak_tflops``).

    Returns:
        A JSON-able dict: ``project_img_s``, ``bare_img_s``, ``ratio``, ``mfu_project``,
        ``mfu_bare``, ``flops_per_image`` (+ how counted), timings and the settings.
    """
    from kvasir_ml.device import resolve_device

    device = resolve_device(cfg.runtime.device)
    compile_ = compile_ and device.type == "cuda"
    data = prepare_data(cfg, run_dir)
    n_out = len(data.label_names)
    flops = train_flops_per_image(cfg, n_out)
    peak = peak if peak is not None else peak_tflops(device)
    benchmark_before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # as training runs have it (runtime.deterministic false)
    try:
        bare_before = _bare_img_s(cfg, n_out, device, steps, warmup, compile_)
        stats = _project_img_s(cfg, data, device, steps, warmup, compile_)
        bare_after = _bare_img_s(cfg, n_out, device, steps, warmup, compile_)
    finally:
        torch.backends.cudnn.benchmark = benchmark_before
    project, bare = stats["img_s"], (bare_before + bare_after) / 2

    def mfu(img_s: float) -> float | None:
        return round(img_s * flops / (peak * 1e12), 4) if peak else None

    rt = cfg.runtime
    return {
        "device": device_name(device), "project_img_s": round(project, 2), "bare_img_s": round(bare, 2),
        "ratio": round(project / bare, 3), "bare_img_s_before_after": [round(bare_before, 2), round(bare_after, 2)],
        "project_data_time_s": round(stats["data_time_s"], 3), "project_step_time_s": round(stats["step_time_s"], 3),
        "flops_per_image": flops, "flops_counted": "fwd+bwd convolutions and matmuls (torch.utils.flop_counter)",
        "achieved_tflops_project": round(project * flops / 1e12, 2), "peak_tflops": peak,
        "peak_basis": "dense bf16 tensor-core peak from the data sheet" if peak else None,
        "mfu_project": mfu(project), "mfu_bare": mfu(bare),
        "arch": cfg.model.arch, "size_px": cfg.data.image_size_px, "batch": rt.batch_size, "steps": steps,
        "warmup_steps": warmup, "inset_mode": cfg.model.inset_mode, "workers": rt.workers, "bf16": rt.amp,
        "channels_last": rt.channels_last, "compile": compile_, "augment_on_device": build_batch_augment(cfg.aug) is not None,
        "n_train_images": len(data.records["train"]), "torch": str(torch.__version__),
    }


def bench_config(size_px: int, batch: int, workers: int, n_images: int, device: str = "cpu",
                 arch: str = "resnet50", inset_mode: str = "branch", bf16: bool = False,
                 channels_last: bool = False, cache_dir: str | None = None,
                 canonical: str = "synthetic", root: str | None = None) -> ClassifierConfig:
    """A classifier config for the benchmarks (synthetic data unless ``canonical`` names a file)."""
    data: dict[str, Any] = {"canonical": canonical, "image_size_px": size_px, "fractions": [0.9, 0.05, 0.05],
                            "cache_dir": cache_dir}
    if canonical == "synthetic":
        data["synthetic_n"] = n_images
    if root:
        data["root"] = root
    data["near_duplicate_max_distance"] = None  # perceptual hashing is not what a benchmark measures
    return ClassifierConfig.model_validate({
        "data": data, "model": {"arch": arch, "inset_mode": inset_mode},
        "runtime": {"device": device, "amp": bf16, "channels_last": channels_last, "workers": workers,
                    "batch_size": batch, "progress": False},
        "tracking": {"mode": "disabled"},
    })
