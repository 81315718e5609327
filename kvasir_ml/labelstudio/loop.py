"""``kvasir-ml loop``: one turn of the annotation loop.

pull the project -> new canonical version -> fine-tune the classifier and/or detector from
their previous checkpoints on it -> push the new models' predictions under a new
``model_version`` -> make that version the project's prelabeling model.

Fine-tuning reuses the previous run's ``config.yaml`` (same architecture, image size, inset
mode) and its ``split.json`` (the frozen split: images the previous model saw in training
never land in the new test split), with ``data.canonical`` set to the new version and
``model.weights`` to the previous checkpoint; extra ``key=value`` overrides apply on top
(e.g. ``optim.epochs=2``). Classifier: the whole model (backbone, head, inset branch)
starts from the previous checkpoint when its labels are unchanged, else the backbone does and
the head is re-learned (``models.classifier.build_model``); detector: the whole ultralytics
model starts from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from kvasir_ml.io import atomic_write_json
from kvasir_ml.labelstudio.client import LSClient
from kvasir_ml.labelstudio.export import ConvertReport
from kvasir_ml.labelstudio.sync import (
    PushReport, match_predictions, model_version_for, predictions_from_checkpoints, pull_project, push_dataset,
    set_prelabeling_model,
)

log = logging.getLogger(__name__)


@dataclass
class LoopResult:
    """What one turn did; ``stopped`` says why it ended early (nothing changed)."""

    canonical: Path | None = None
    pull_report: ConvertReport | None = None
    classifier: Path | None = None
    detector: Path | None = None
    model_version: str | None = None
    push_report: PushReport | None = None
    prelabel_before: str | None = None
    stopped: str | None = None
    runs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"canonical": str(self.canonical) if self.canonical else None, "classifier": _s(self.classifier),
                "detector": _s(self.detector), "model_version": self.model_version, "runs": self.runs,
                "prelabel_before": self.prelabel_before, "stopped": self.stopped,
                "pull": self.pull_report.to_dict() if self.pull_report else None,
                "push": self.push_report.summary_lines() if self.push_report else None}


def _s(path: Path | None) -> str | None:
    return str(path) if path else None


def _run_dir_of(ckpt: Path) -> Path:
    """``RUN_DIR`` of ``RUN_DIR/checkpoints/best.pt`` (where config.yaml and split.json live)."""
    run_dir = ckpt.resolve().parent.parent
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{ckpt} is not inside a kvasir-ml run folder (no {run_dir / 'config.yaml'}); "
                                "fine-tuning reuses that run's config and split")
    return run_dir


def fine_tune_overrides(prev_ckpt: Path, canonical: Path, data_root: Path, extra: Sequence[str] = ()) -> list[str]:
    """Overrides that turn the previous run's config into its fine-tuning on ``canonical``."""
    run_dir = _run_dir_of(prev_ckpt)
    out = [f"data.canonical={canonical.resolve()}", f"data.root={data_root.resolve()}",
           f"model.weights={prev_ckpt.resolve()}"]
    if (run_dir / "split.json").is_file():
        out.append(f"data.split_file={run_dir / 'split.json'}")
    return out + list(extra)


def fine_tune_classifier(prev_ckpt: Path, canonical: Path, data_root: Path, out_dir: Path,
                         overrides: Sequence[str] = ()) -> Path:
    """Train a classifier from ``prev_ckpt`` on ``canonical``; returns the new best checkpoint."""
    from kvasir_ml.train.config import load_classifier_config
    from kvasir_ml.train.run import train_classifier

    cfg = load_classifier_config(_run_dir_of(prev_ckpt) / "config.yaml",
                                 fine_tune_overrides(prev_ckpt, canonical, data_root, overrides))
    train_classifier(cfg, out_dir)
    return out_dir / "checkpoints" / "best.pt"


def fine_tune_detector(prev_ckpt: Path, canonical: Path, data_root: Path, out_dir: Path,
                       overrides: Sequence[str] = ()) -> Path:
    """Train a detector from ``prev_ckpt`` on ``canonical``; returns the new best checkpoint."""
    from kvasir_ml.config import load_config
    from kvasir_ml.detection.config import DetectorConfig
    from kvasir_ml.detection.run import train_detector

    cfg = load_config(DetectorConfig, _run_dir_of(prev_ckpt) / "config.yaml",
                      fine_tune_overrides(prev_ckpt, canonical, data_root, overrides))
    train_detector(cfg, out_dir)
    return out_dir / "checkpoints" / "best.pt"


def run_loop(
    client: LSClient, project: str | int, base: str | Path, data_root: str | Path, out_dir: str | Path,
    classifier: str | Path | None = None, detector: str | Path | None = None,
    classifier_overrides: Sequence[str] = (), detector_overrides: Sequence[str] = (),
    policy: str = "latest", device: str = "auto", force: bool = False,
) -> LoopResult:
    """One turn of the loop (see the module doc).

    Args:
        base: the canonical version the previous models were trained on (kept unchanged).
        out_dir: new, empty: ``classifier/`` and ``detector/`` run folders and ``loop.json``.
        classifier, detector: the previous checkpoints (``RUN_DIR/checkpoints/best.pt``); at least one.
        force: fine-tune and push even when the pull changed nothing.

    Returns:
        The turn's result; ``stopped`` is set (and nothing trained) when the annotations
        did not change since ``base`` and ``force`` is off.
    """
    if not classifier and not detector:
        raise ValueError("the loop needs the previous --classifier and/or --detector checkpoint")
    out_dir, data_root = Path(out_dir), Path(data_root)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} exists and is not empty; each turn of the loop writes a new folder")
    result = LoopResult()
    pulled = pull_project(client, project, data_root, base_path=base, policy=policy)
    result.pull_report = pulled.report
    if pulled.path is None and not force:
        result.stopped = f"no annotation changed since {base}: nothing to retrain on"
        return result
    result.canonical = pulled.path or Path(base)
    if classifier:
        result.classifier = fine_tune_classifier(Path(classifier), result.canonical, data_root, out_dir / "classifier",
                                                 classifier_overrides)
        result.runs["classifier"] = str(out_dir / "classifier")
    if detector:
        result.detector = fine_tune_detector(Path(detector), result.canonical, data_root, out_dir / "detector",
                                             detector_overrides)
        result.runs["detector"] = str(out_dir / "detector")
    result.model_version = model_version_for(result.classifier, result.detector)
    from kvasir_ml.data.coco import load_canonical

    dataset = load_canonical(result.canonical)
    entries = predictions_from_checkpoints(dataset, data_root, result.classifier, result.detector, device)
    predictions, problems = match_predictions(entries, data_root, {img["file_name"] for img in dataset.images})
    result.push_report = push_dataset(client, dataset, data_root, project, predictions=predictions,
                                      model_version=result.model_version)
    result.push_report.problems = problems + result.push_report.problems
    result.prelabel_before = set_prelabeling_model(client, result.push_report.project_id, result.model_version)
    atomic_write_json(out_dir / "loop.json", result.to_dict())
    return result
