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
``predict`` and logged as the model artifact) leaves out optimizer, scheduler and RNG.
"""

from __future__ import annotations

import platform
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from kvasir_ml.io import atomic_write

CHECKPOINT_FORMAT = 1


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
