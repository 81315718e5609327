"""The two loop functions, ``train_one_epoch`` and ``evaluate``, plus the LR range test.

Plain functions with explicit arguments; the run function wires them. Data time (blocked
on the loader) is measured apart from step time (everything else), so a starved GPU shows.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

INPUT_KEYS = ("image", "inset", "inset_state")


def model_inputs(batch: dict[str, Any], device: torch.device, channels_last: bool,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Move the model's inputs to the device (uint8 images: 4x less to copy than float), then
    augment the main image there as one batch (``augment.BatchAugment``; the inset crop is not
    augmented) and put 4-D inputs in the memory format the model runs in."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = {}
    for key in INPUT_KEYS:
        if key in batch:
            x = batch[key].to(device, non_blocking=True)
            if key == "image" and augment is not None:
                x = augment(x)
            if x.ndim == 4:
                x = x.contiguous(memory_format=fmt)  # a no-op for loader batches already in channels_last
            out[key] = x
    return out


def targets(batch: dict[str, Any], task: str, device: torch.device) -> torch.Tensor:
    key = "labels" if task == "multilabel" else "class"
    return batch[key].to(device, non_blocking=True)


def _autocast(device: torch.device, amp: bool):
    # bf16 needs no loss scaling; on CPU autocast is slower than fp32 on these machines.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def train_one_epoch(model: nn.Module, loader: Iterable, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, device: torch.device, task: str, amp: bool = True,
                    channels_last: bool = False, progress: bool = True, desc: str = "train",
                    augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """One pass over ``loader`` with an optimizer step per batch (scheduler stepped per batch).

    ``augment`` (e.g. ``augment.BatchAugment``) runs on each batch's images on the device.

    Returns:
        ``train_loss`` (image-weighted mean), ``img_s``, ``data_time_s``, ``step_time_s``,
        ``n_images``, ``lr`` (first param group, at the end).
    """
    model.train()
    loss_sum = torch.zeros((), device=device)
    n_images, data_time = 0, 0.0
    start = tick = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        data_time += time.perf_counter() - tick
        inputs = model_inputs(batch, device, channels_last, augment)
        y = targets(batch, task, device)
        with _autocast(device, amp):
            logits = model(**inputs)
        loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        bs = int(y.shape[0])
        # Accumulate on the device: .item() per step would be a CPU-GPU sync point.
        loss_sum += loss.detach() * bs
        n_images += bs
        if progress and step % 10 == 0:
            bar.set_postfix(img_s=f"{n_images / (time.perf_counter() - start):.1f}")
        tick = time.perf_counter()
    train_loss = float(loss_sum.item())  # the one sync per epoch
    wall = time.perf_counter() - start
    return {
        "train_loss": train_loss / max(n_images, 1),
        "img_s": n_images / wall if wall > 0 else 0.0,
        "data_time_s": data_time,
        "step_time_s": wall - data_time,
        "n_images": n_images,
        "lr": float(optimizer.param_groups[0]["lr"]),
    }


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Sigmoid (multilabel) or softmax (singlelabel) on the CPU in float64: float32 rounds a
    sigmoid above ~0.99999994 to 1.0, and post-hoc calibration needs the logit back."""
    z = logits.detach().cpu().double()
    return torch.sigmoid(z) if task == "multilabel" else torch.softmax(z, dim=1)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device, task: str,
             loss_fn: nn.Module | None = None, amp: bool = True, channels_last: bool = False,
             progress: bool = False) -> dict[str, Any]:
    """Probabilities for every image of ``loader`` (in loader order).

    Returns:
        ``outputs``: (N, K) float64 numpy — sigmoid label scores (multilabel) or softmax
        class probabilities (singlelabel); ``loss`` (mean, or None without ``loss_fn``);
        ``img_s``.
    """
    model.eval()
    outs, loss_sum, n = [], 0.0, 0
    start = time.perf_counter()
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress, dynamic_ncols=True):
        inputs = model_inputs(batch, device, channels_last)
        with _autocast(device, amp):
            logits = model(**inputs).float()
        if loss_fn is not None:
            loss_sum += float(loss_fn(logits, targets(batch, task, device))) * logits.shape[0]
        outs.append(probabilities(logits, task))
        n += logits.shape[0]
    wall = time.perf_counter() - start
    outputs = torch.cat(outs).double().numpy() if outs else np.zeros((0, 0))
    return {"outputs": outputs, "loss": loss_sum / n if (loss_fn is not None and n) else None,
            "img_s": n / wall if wall > 0 else 0.0}


def lr_find(model: nn.Module, loader: Iterable, loss_fn: nn.Module,
            make_optimizer: Callable[[nn.Module, float], torch.optim.Optimizer], device: torch.device, task: str,
            start_lr: float = 1e-6, end_lr: float = 1.0, n_steps: int = 50, amp: bool = True,
            channels_last: bool = False, augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, Any]:
    """LR range test (Smith 2017): raise the LR exponentially, record the smoothed loss.

    Works on a deep copy, so ``model`` is untouched. Stops early when the loss explodes
    (4x the best). The suggestion is the LR of the minimum smoothed loss divided by 10,
    a conservative point on the descending slope.

    Returns:
        ``lrs``, ``losses`` (lists), ``suggested_lr``.
    """
    probe = copy.deepcopy(model).to(device).train()
    optimizer = make_optimizer(probe, start_lr)
    gamma = (end_lr / start_lr) ** (1.0 / max(n_steps - 1, 1))
    lrs, losses, avg, best = [], [], 0.0, math.inf
    step = 0
    while step < n_steps:
        for batch in loader:
            lr = start_lr * gamma**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            with _autocast(device, amp):
                logits = probe(**model_inputs(batch, device, channels_last, augment))
            loss = loss_fn(logits.float(), targets(batch, task, device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            avg = 0.9 * avg + 0.1 * loss.item()
            smoothed = avg / (1 - 0.9 ** (step + 1))
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            step += 1
            if step >= n_steps or smoothed > 4 * best or not math.isfinite(smoothed):
                step = n_steps
                break
    suggested = lrs[int(np.argmin(losses))] / 10.0 if lrs else start_lr
    return {"lrs": lrs, "losses": losses, "suggested_lr": suggested}
