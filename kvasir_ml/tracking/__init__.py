"""Experiment tracking behind a small interface.

Training code talks to a ``Tracker``; ``make_tracker`` returns the W&B implementation
(offline by default) or the no-op ``NullTracker``. The run folder's own JSON files are
the source of truth; the tracker mirrors them, and a tracker failure never stops
training (implementations catch and log their own errors).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from kvasir_ml.config import TrackingConfig

log = logging.getLogger(__name__)


@runtime_checkable
class Tracker(Protocol):
    """What training and evaluation code may call. All methods must be cheap and safe."""

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Time-series metrics (per step or per epoch)."""

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final numbers (test metrics) shown in the runs table."""

    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table, e.g. per-class AP/F1/threshold/support."""

    def image(self, key: str, path: str | Path, caption: str = "") -> None:
        """A PNG already written to the run folder (plots, confusion matrices)."""

    def predictions(self, key: str, samples: Sequence[dict[str, Any]], class_names: Sequence[str]) -> None:
        """Sample predictions. Each sample: ``{"image": HxWx3 uint8, "caption": str,
        "boxes": [{"xywh_px": [...], "class": name, "score": float | None, "kind": "pred"|"gt"}]}``."""

    def pr_curves(self, key: str, y_true: Any, y_score: Any, class_names: Sequence[str]) -> None:
        """Precision-recall curves (multi-label: y_true (N, C) 0/1, y_score (N, C))."""

    def confusion(self, key: str, y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> None:
        """A confusion matrix for single-label predictions."""

    def artifact(self, path: str | Path, name: str, type: str, metadata: dict[str, Any] | None = None) -> None:
        """A file or folder as an artifact (dataset split, model checkpoint)."""

    def finish(self) -> None:
        """Close the run. Safe to call twice."""


class NullTracker:
    """Does nothing; used for ``mode: disabled`` and in tests that ask for no tracking."""

    run_dir: Path | None = None

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict[str, Any]) -> None:
        pass

    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        pass

    def image(self, key: str, path: str | Path, caption: str = "") -> None:
        pass

    def predictions(self, key: str, samples: Sequence[dict[str, Any]], class_names: Sequence[str]) -> None:
        pass

    def pr_curves(self, key: str, y_true: Any, y_score: Any, class_names: Sequence[str]) -> None:
        pass

    def confusion(self, key: str, y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> None:
        pass

    def artifact(self, path: str | Path, name: str, type: str, metadata: dict[str, Any] | None = None) -> None:
        pass

    def finish(self) -> None:
        pass


def make_tracker(
    cfg: TrackingConfig,
    run_dir: str | Path,
    run_name: str,
    job_type: str,
    config: dict[str, Any],
    tags: Sequence[str] = (),
) -> Tracker:
    """Build the tracker a run asks for (``tracking.mode``, lowered by ``WANDB_MODE``: see
    ``effective_mode``).

    Args:
        cfg: tracking section of the run's config.
        run_dir: the run folder; W&B files go to ``cfg.dir`` or ``<run_dir>/wandb``.
        run_name: display name of the run.
        job_type: ``train-classifier``, ``train-detector``, ``compare`` ...
        config: the resolved run config (secrets never included) logged as the W&B config.
        tags: tags added to ``cfg.tags`` (model kind, inset mode, dataset).
    """
    mode = effective_mode(cfg.mode, os.environ)
    if mode == "disabled":
        return NullTracker()
    from kvasir_ml.tracking.wandb_tracker import WandbTracker

    if mode != cfg.mode:
        cfg = cfg.model_copy(update={"mode": mode})
    return WandbTracker.start(cfg, Path(run_dir), run_name, job_type, config, list(tags))


# How much a mode shares, least first. WANDB_MODE may move a run down this list, never up.
_PRIVACY = {"disabled": 0, "offline": 1, "online": 2}
# wandb's own spellings of WANDB_MODE and what they mean here.
_ENV_MODES = {"disabled": "disabled", "offline": "offline", "dryrun": "offline", "online": "online", "run": "online",
              "shared": "online"}


def effective_mode(config_mode: str, environ: Mapping[str, str]) -> str:
    """The W&B mode a run uses: ``tracking.mode``, unless ``WANDB_MODE`` asks for less.

    Precedence: the more private of the two wins (disabled < offline < online), so
    ``WANDB_MODE=disabled`` or ``offline`` in the environment (CI, an air-gapped machine) always
    holds, while ``WANDB_MODE=online`` — often left in a shell profile — cannot make a run
    configured ``offline`` upload anything (a warning says so; set ``tracking.mode=online``).

    Raises:
        ValueError: ``WANDB_MODE`` holds a value wandb does not know.
    """
    raw = (environ.get("WANDB_MODE") or "").strip().lower()
    if not raw:
        return config_mode
    if raw not in _ENV_MODES:
        raise ValueError(f"WANDB_MODE={raw!r} in the environment is not a W&B mode "
                         f"({', '.join(sorted(_ENV_MODES))}); unset it or fix it")
    env_mode = _ENV_MODES[raw]
    if _PRIVACY[env_mode] < _PRIVACY[config_mode]:
        log.info("W&B: WANDB_MODE=%s in the environment overrides tracking.mode=%s", raw, config_mode)
        return env_mode
    if _PRIVACY[env_mode] > _PRIVACY[config_mode]:
        log.warning("W&B: WANDB_MODE=%s ignored: tracking.mode=%s is more private and wins "
                    "(set tracking.mode=online to upload)", raw, config_mode)
    return config_mode
