"""Checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``.

Only tensors and primitive containers go in (no pickled classes, no numpy arrays), so a
checkpoint from anywhere can be opened without executing code. Contents::

    {"format": 1, "model", "optimizer", "scheduler", "epoch" (completed epochs),
     "rng": {...}, "config" (resolved, JSON-able), "label_names", "class_names",
     "taxonomy_version" (of annotations/taxonomy.yaml when trained; predict refuses another),
     "thresholds" (list[float], tuned on the calibrated val scores), "calibration" (temperatures),
     "decoder" (multi-label: the class decoder's coef/intercept/class order; else None),
     "split_sha256", "versions", "select", "best_score", "history"}

``calibration`` and ``decoder`` are ``evaluation.posthoc.PostHoc.to_state()``: plain lists and
numbers, fitted on val at the checkpoint's epoch.

``last.pt`` holds all of it (for ``--resume``); ``best.pt`` (the epoch chosen by the
``eval.select`` rule, ``best_score`` its score, higher is better; used by
``predict`` and logged as the model artifact) leaves out optimizer, scheduler and RNG. Both are
written as one commit (``commit_checkpoints``) that ``recover_checkpoints`` completes or rolls
back after a kill.
"""

from __future__ import annotations

import logging
import os
import platform
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from kvasir_ml.io import atomic_write, orphaned_temp_files
from kvasir_ml.rundir import RunDirError

CHECKPOINT_FORMAT = 1
PENDING_BEST = "best.next.pt"  # a new best.pt waiting for last.pt to name its epoch

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or lacks a required entry."""


def library_versions() -> dict[str, str]:
    import sklearn
    import torchvision

    import kvasir_ml

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "numpy": str(np.__version__),
        "sklearn": str(sklearn.__version__),
        "kvasir_ml": str(getattr(kvasir_ml, "__version__", "unknown")),
    }


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as tensors/primitives."""
    np_state = cast(tuple, np.random.get_state())  # legacy=True (the default): the MT19937 tuple
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    # .cpu(): a checkpoint loaded with map_location="cuda" puts these byte tensors on the GPU.
    np.random.set_state(("MT19937", np_state["keys"].cpu().numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + rename).

    Raises:
        kvasir_ml.io.DiskFullError: the disk filled up; an existing ``path`` is unchanged.
    """
    path = Path(path)

    def write(tmp: Path) -> None:
        # Through a Python file object, not a path: torch's own writer reports a full disk as
        # "[enforce fail at inline_container.cc]"; a file object raises OSError(ENOSPC), which
        # atomic_write turns into "no space left on <folder>".
        with open(tmp, "wb") as fh:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, fh)

    atomic_write(path, write)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``).

    Raises:
        CheckpointError: missing file, not a kvasir_ml checkpoint, or unsafe content.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, disallowed globals
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {exc}") from None
    for key in ("model", "config", "label_names", "class_names", "thresholds"):
        if not isinstance(state, dict) or key not in state:
            raise CheckpointError(f"checkpoint {path} is not a kvasir_ml classifier checkpoint (no {key!r})")
    return state


def commit_checkpoints(ckpt_dir: Path, state: dict[str, Any], new_best: bool) -> None:
    """Write last.pt (and, with ``new_best``, best.pt) as one commit whose record is last.pt.

    best.pt may only change together with last.pt's ``best_epoch``, else a kill between
    the two writes leaves a stale best.pt that a resumed run would report. So a new best
    goes to ``best.next.pt`` first, then last.pt (naming its epoch) is written, then
    best.next.pt is renamed over best.pt; ``recover_checkpoints`` rolls a kill at any
    point back (orphan best.next.pt) or forward (rename not done yet).

    Args:
        ckpt_dir: ``RUN_DIR/checkpoints``.
        state: the whole checkpoint of this epoch (``last.pt``).
        new_best: this epoch becomes best.pt (``state["best_epoch"]`` names it).
    """
    pending = ckpt_dir / PENDING_BEST
    if new_best:
        # best.pt is for predict and the model artifact: no optimizer/scheduler/RNG (3x smaller).
        save_checkpoint(pending, {k: v for k, v in state.items() if k not in ("optimizer", "scheduler", "rng")})
    save_checkpoint(ckpt_dir / "last.pt", state)
    if new_best:
        os.replace(pending, ckpt_dir / "best.pt")


def recover_checkpoints(ckpt_dir: Path, last: dict[str, Any]) -> list[str]:
    """Make ``best.pt`` agree with ``last.pt`` after an interrupted ``commit_checkpoints``.

    Deletes temporary files of killed writes; renames a pending ``best.next.pt`` into place
    when ``last.pt`` already names its epoch (roll forward), else deletes it (roll back: its
    epoch is re-run); then checks that ``best.pt`` holds ``last["best_epoch"]``. A missing
    or different best.pt is rebuilt from last.pt when last.pt holds that very epoch.

    Args:
        ckpt_dir: ``RUN_DIR/checkpoints``.
        last: the loaded ``last.pt``.

    Returns:
        What was done, one line each (also logged).

    Raises:
        RunDirError: best.pt does not hold the best epoch and cannot be rebuilt.
    """
    actions = []
    for tmp in orphaned_temp_files(ckpt_dir):
        tmp.unlink()
        actions.append(f"removed {tmp.name} (a write killed half-way)")
    best_epoch, pending, best = last.get("best_epoch"), ckpt_dir / PENDING_BEST, ckpt_dir / "best.pt"
    if pending.is_file():
        if best_epoch is not None and _epoch_of(pending) == int(best_epoch):
            os.replace(pending, best)
            actions.append(f"completed the commit of {best.name} (epoch {best_epoch})")
        else:
            pending.unlink()
            actions.append(f"removed {pending.name}: its epoch was not committed to last.pt and is re-run")
    if best_epoch is None:  # written before checkpoints recorded best_epoch: nothing to check against
        actions.append(f"{best.name} not verified: last.pt predates best_epoch records")
    elif int(best_epoch) > 0 and _epoch_of(best) != int(best_epoch):
        found = _epoch_of(best)
        if int(last["epoch"]) != int(best_epoch):
            raise RunDirError(f"cannot resume: {best} holds epoch {found} but {ckpt_dir / 'last.pt'} says the best "
                              f"model is epoch {best_epoch}, which no checkpoint holds any more")
        save_checkpoint(best, {k: v for k, v in last.items() if k not in ("format", "optimizer", "scheduler", "rng")})
        actions.append(f"rebuilt {best.name} from last.pt (it held epoch {found}, the best is {best_epoch})")
    for line in actions:
        log.warning("%s: %s", ckpt_dir, line)
    return actions


def _epoch_of(path: Path) -> int | None:
    """The ``epoch`` a checkpoint holds; None when it is missing or unreadable."""
    try:
        return int(load_checkpoint(path)["epoch"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None
