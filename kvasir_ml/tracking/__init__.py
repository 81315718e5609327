"""Experiment tracking behind a small interface.

Training code talks to a ``Tracker``; ``make_tracker`` returns the W&B implementation
(offline by default) or the no-op ``NullTracker``. The run folder's own JSON files are
the source of truth; the tracker mirrors them, and a tracker failure never stops
training (implementations catch and log their own errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from kvasir_ml.config import TrackingConfig


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

    def ensure_active(self) -> bool:
        """Nothing to keep active (see ``WandbTracker.ensure_active``)."""
        return False


def make_tracker(
    cfg: TrackingConfig,
    run_dir: str | Path,
    run_name: str,
    job_type: str,
    config: dict[str, Any],
    tags: Sequence[str] = (),
) -> Tracker:
    """Build the tracker a run asks for.

    Args:
        cfg: tracking section of the run's config.
        run_dir: the run folder; W&B files go to ``cfg.dir`` or ``<run_dir>/wandb``.
        run_name: display name of the run.
        job_type: ``train-classifier``, ``train-detector``, ``compare`` ...
        config: the resolved run config (secrets never included) logged as the W&B config.
        tags: tags added to ``cfg.tags`` (model kind, inset mode, dataset).
    """
    if cfg.mode == "disabled":
        return NullTracker()
    from kvasir_ml.tracking.wandb_tracker import WandbTracker

    return WandbTracker.start(cfg, Path(run_dir), run_name, job_type, config, list(tags))
