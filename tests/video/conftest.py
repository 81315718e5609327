"""Video fixtures: a short synthetic video (session-wide) and, for the slow end-to-end tests,
a tiny classifier and detector trained on the still generator's frames."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def synth_video(tmp_path_factory) -> Path:
    """``synthesize_video`` output (48 frames, 160x128): returns the ground-truth JSON path."""
    from kvasir_ml.video.synth import synthesize_video

    return synthesize_video(tmp_path_factory.mktemp("video"), seed=3, n_frames=48, fps=12.0, frame_size_px=(160, 128))


@pytest.fixture(scope="session")
def tiny_models(synth_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny multi-label classifier and detector (1 epoch, 64 px, no tracking) on ``synth_dir``,
    as the Label Studio loop fixture trains them: ``(classifier best.pt, detector best.pt)``."""
    from kvasir_ml.config import load_config
    from kvasir_ml.detection.config import DetectorConfig
    from kvasir_ml.detection.run import train_detector
    from kvasir_ml.train.config import load_classifier_config
    from kvasir_ml.train.run import train_classifier

    runs = tmp_path_factory.mktemp("video-models")
    data = [f"data.canonical={synth_dir / 'annotations.coco.json'}"]
    train_classifier(load_classifier_config(REPO / "configs" / "classifier_multilabel_tiny.yaml",
                                            data + ["optim.epochs=1", "tracking.mode=disabled", "runtime.threads=1"]),
                     runs / "classifier")
    train_detector(load_config(DetectorConfig, REPO / "configs" / "detector_tiny.yaml",
                               data + ["train.epochs=1", "train.imgsz=64", "tracking.mode=disabled",
                                       "eval.n_overlays=0"]), runs / "detector")
    return runs / "classifier" / "checkpoints" / "best.pt", runs / "detector" / "checkpoints" / "best.pt"
