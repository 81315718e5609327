"""The detector experiment config: one validated object, built at the edge, passed down.

Sections mirror ``configs/detector_*.yaml`` (every key there carries a ``# (type)
description`` comment). Unknown keys raise (``StrictModel``). Field names of the data
section come from the shared ``DatasetConfig`` so both kinds of run read alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from kvasir_ml.config import DatasetConfig, StrictModel, TrackingConfig, load_config


class DetectorDataConfig(DatasetConfig):
    """Which images, which split (``DatasetConfig``), how they are exported for ultralytics."""

    # smoke runs: keep this many images (a seeded sample) before splitting; None = all
    max_images: int | None = Field(None, ge=8)
    # raw: frames as they are; masked: black out the inset region (detected box, else the
    # nominal region) on EVERY exported and predicted image; detected: black out only a
    # detected inset (frames without one stay whole: the nominal region hides polyp parts)
    inset_mode: Literal["raw", "masked", "detected"] = "raw"
    # how unmasked images enter the YOLO dataset: symlink (no copy) or copy
    link_mode: Literal["symlink", "copy"] = "symlink"
    # detector smoke runs want a smaller synthetic dataset than the classifier's default
    synthetic_n: int = Field(64, ge=16)


class DetectorModelConfig(StrictModel):
    # ultralytics model YAML built from scratch (yolov8n.yaml, yolo11n.yaml, yolo26n.yaml ...)
    arch: str = "yolov8n.yaml"
    # local .pt weights to start from (a path; never a hub name); None = from scratch
    weights: str | None = None

    @model_validator(mode="after")
    def _arch_is_yaml(self) -> "DetectorModelConfig":
        if not self.arch.endswith((".yaml", ".yml")):
            raise ValueError(
                f"model.arch must be a model YAML (e.g. yolov8n.yaml), got {self.arch!r}; "
                "put local .pt files in model.weights"
            )
        return self


class DetectorTrainConfig(StrictModel):
    epochs: int = Field(1, ge=1)
    # square training/inference size in pixels (multiple of 32)
    imgsz: int = Field(128, ge=32, le=2048)
    batch: int = Field(8, ge=1)
    # auto | cpu | cuda | cuda:N
    device: str = "auto"
    # dataloader workers
    workers: int = Field(0, ge=0)
    seed: int = 0
    deterministic: bool = True
    # auto: bf16 on a CUDA device that supports it, else fp32. fp16 AMP is not offered:
    # ultralytics validates it by downloading yolo26n.pt (check_amp), see yolo.py
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    # auto | SGD | AdamW | Adam ... (ultralytics optimizer names)
    optimizer: str = "auto"
    lr0: float = Field(0.01, gt=0)
    # epochs without val improvement before stopping (ultralytics early stopping)
    patience: int = Field(100, ge=1)
    # warmup epochs (ultralytics default 3; keep small for tiny runs)
    warmup_epochs: float = Field(3.0, ge=0)
    # mosaic probability and the last epochs that turn it off
    mosaic: float = Field(1.0, ge=0, le=1)
    close_mosaic: int = Field(10, ge=0)
    # flips / rotation: endoscopy frames have no "up"
    fliplr: float = Field(0.5, ge=0, le=1)
    flipud: float = Field(0.5, ge=0, le=1)
    degrees: float = Field(0.0, ge=0, le=180)
    # ultralytics image cache: false | ram | disk
    cache: Literal[False, "ram", "disk"] = False
    # ultralytics' own plots (labels, curves, batch mosaics) in RUN_DIR/ultralytics
    plots: bool = False
    time_h: float | None = Field(
        None, gt=0,
        description="train for this many hours instead of a number of epochs (ultralytics' 'time': it "
                    "re-plans the epochs, and so the LR schedule, after measuring the first); None = use epochs")


class DetectorEvalConfig(StrictModel):
    # confidence threshold for scoring (COCO AP needs the low-score tail)
    conf: float = Field(0.001, ge=0, le=1)
    # NMS IoU threshold
    iou: float = Field(0.7, gt=0, le=1)
    # detections kept per image (COCO's AP counts at most 100)
    max_det: int = Field(100, ge=1)
    # confidence threshold stored in the checkpoint for `kvasir-ml predict`
    predict_conf: float = Field(0.25, ge=0, le=1)
    # GT-vs-prediction overlays written to RUN_DIR/plots (test split)
    n_overlays: int = Field(8, ge=0)
    # batch size for inference
    batch: int = Field(16, ge=1)


class DetectorConfig(StrictModel):
    """Everything one detector run needs."""

    name: str = "detector"
    data: DetectorDataConfig = DetectorDataConfig()
    model: DetectorModelConfig = DetectorModelConfig()
    train: DetectorTrainConfig = DetectorTrainConfig()
    eval: DetectorEvalConfig = DetectorEvalConfig()
    tracking: TrackingConfig = TrackingConfig()


def load_detector_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> DetectorConfig:
    """Load ``configs/detector_*.yaml`` plus ``key=value`` overrides (unknown keys raise ConfigError)."""
    return load_config(DetectorConfig, path, overrides)
