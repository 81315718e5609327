"""torchrun / DistributedDataParallel plumbing: process group, rank-0 decisions, reductions.

Launch any training (``kvasir-ml train classifier``, ``kvasir-ml experiment ...``) with
``torchrun --nproc_per_node N`` and ``WORLD_SIZE`` > 1 turns DDP on. Conventions:

* ``runtime.batch_size`` is **per process**: the global batch is ``N x batch_size``, and an
  epoch has ``1/N`` as many steps. The LR is used as configured (never rescaled
  automatically): when changing N, scale it yourself (linear in the global batch for SGD,
  roughly its square root for AdamW), or use ``optim.lr_find``, which runs on rank 0 with one
  process's batch and sends its choice to every rank.
* Rank 0 alone writes: data preparation, run folders, checkpoints, metrics, W&B, experiment
  reports; the other ranks wait at barriers and read what it wrote.
* A checkpoint records the world size; resuming it with another one is refused (data order
  and schedule length depend on it).
"""

from __future__ import annotations

import atexit
import datetime
import os
from typing import Any, Callable

import torch
import torch.distributed as dist

# Long enough for rank 0 to prepare a large dataset or train a detector while the others wait.
_TIMEOUT = datetime.timedelta(hours=2)


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """Join torchrun's process group (if any).

    Args:
        device: the resolved device; under torchrun a CUDA device becomes ``cuda:LOCAL_RANK``.

    Returns:
        ``(rank, world size, device)``; the group is joined once per process and left at exit.
        Without torchrun: ``(0, 1, device)``.
    """
    world = world_size_from_env()
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=_TIMEOUT)
        # Kept for the process's lifetime: a group destroyed and created again in one process
        # fails to reconnect (gloo), and an experiment trains several runs in one process.
        atexit.register(_leave)
    return dist.get_rank(), dist.get_world_size(), device


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def broadcast_from_rank0(value: Any, world: int) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if world <= 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def reduce_epoch_stats(stats: dict[str, Any], device: torch.device, world: int) -> dict[str, Any]:
    """``train_one_epoch`` stats over all ranks: images summed, loss image-weighted over all
    of them, times of the slowest rank, img/s = all images / slowest wall time."""
    if world <= 1:
        return stats
    n = float(stats["n_images"])
    sums = torch.tensor([stats["train_loss"] * n, n], dtype=torch.float64, device=device)
    maxes = torch.tensor([stats["data_time_s"], stats["step_time_s"], stats["data_time_s"] + stats["step_time_s"]],
                         dtype=torch.float64, device=device)
    dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    dist.all_reduce(maxes, op=dist.ReduceOp.MAX)
    loss_sum, total = sums.tolist()
    data_s, step_s, wall = maxes.tolist()
    return {**stats, "train_loss": loss_sum / max(total, 1.0), "n_images": int(total),
            "img_s": total / wall if wall > 0 else 0.0, "data_time_s": data_s, "step_time_s": step_s,
            "world_size": world}


def join_process_group(device: torch.device | None = None) -> tuple[int, int]:
    """``(rank, world size)`` of this process. Under torchrun, joins the process group first
    if nobody has (NCCL for a CUDA ``device``, else gloo; default: CUDA when available)."""
    from kvasir_ml.device import resolve_device

    rank, world, _ = init_distributed(device or resolve_device("auto"))
    return rank, world


def on_rank0(fn: Callable[[], Any], rank: int, world: int) -> Any:
    """Run ``fn`` on rank 0 only (a check that may move files, a decision) and give every rank
    its result; an exception it raised is raised on every rank, so no rank waits forever."""
    outcome: tuple[Any, BaseException | None] = (None, None)
    if rank == 0:
        try:
            outcome = (fn(), None)
        except Exception as exc:  # handed to the other ranks, then raised here too
            outcome = (None, exc)
    value, error = broadcast_from_rank0(outcome, world)
    if error is not None:
        raise error
    return value


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank0_first(make: Callable[[bool], Any], rank: int, world: int) -> Any:
    """``make(may_write=True)`` on rank 0, then ``make(may_write=False)`` on the others, which
    read what rank 0 wrote; an exception on rank 0 is raised on every rank (none waits forever)."""
    made: list[Any] = []
    on_rank0(lambda: made.append(make(True)), rank, world)
    return made[0] if rank == 0 else make(False)
