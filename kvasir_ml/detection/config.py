"""The detector experiment config: one validated object, built at the edge, passed down.

Every key is documented once, in its ``Field(description=...)``; ``configs/detector_*.yaml``
are generated from these models (``kvasir-ml config sync``). Unknown keys raise (``StrictModel``). Field names of the data
section come from the shared ``DatasetConfig`` so both kinds of run read alike.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kvasir_ml.config import DatasetConfig, Seed, StrictModel, TrackingConfig


class DetectorDataConfig(DatasetConfig):
    """Which images and split, and how they are exported for ultralytics."""

    max_images: int | None = Field(None, ge=8, description="smoke runs: keep this many images (a seeded sample) "
                                                           "before splitting; null = all")
    inset_mode: Literal["raw", "masked", "detected"] = Field(
        "raw", description="raw = frames as they are | masked = black out the inset region (detected box, else the "
                           "nominal region) on every exported and predicted image | detected = black out only a "
                           "detected inset (the nominal region can hide parts of polyps)")
    link_mode: Literal["symlink", "copy"] = Field("symlink", description="how unmasked images enter the YOLO "
                                                                         "dataset: symlink (no copy) or copy")
    synthetic_n: int = Field(64, ge=16, description="images to synthesize when canonical is null/synthetic "
                                                    "(smaller than the classifier's default)")


class DetectorModelConfig(StrictModel):
    """The YOLO architecture and the weights it starts from."""

    arch: str = Field("yolov8n.yaml", description="ultralytics model YAML, built from scratch (yolov8n.yaml, "
                                                  "yolo11s.yaml, yolo26n.yaml, ...); never a hub name")
    weights: str | None = Field(None, description="local .pt weights to start from (a path; nothing is "
                                                  "downloaded); null = from scratch")
    trust_weights: bool = Field(
        False, description="load model.weights even if it fails the check that it cannot run code when "
        "opened (ultralytics unpickles .pt files); only for files you trust. Checkpoints ultralytics "
        "writes always pass the check")

    @model_validator(mode="after")
    def _arch_is_yaml(self) -> "DetectorModelConfig":
        if not self.arch.endswith((".yaml", ".yml")):
            raise ValueError(
                f"model.arch must be a model YAML (e.g. yolov8n.yaml), got {self.arch!r}; "
                "put local .pt files in model.weights"
            )
        return self


class DetectorTrainConfig(StrictModel):
    """Arguments of ultralytics' trainer (same names)."""

    epochs: int = Field(1, ge=1, description="training epochs")
    imgsz: int = Field(128, ge=32, le=2048, description="square training/inference size in pixels (multiple of 32)")
    batch: int = Field(8, ge=1, description="images per step")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    workers: int = Field(0, ge=0, description="dataloader workers")
    seed: Seed = Field(0, description="training seed")
    deterministic: bool = Field(True, description="deterministic algorithms (ultralytics' flag)")
    amp: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto = bf16 on a CUDA device that supports it, else fp32 (fp16 AMP is not offered: "
                            "ultralytics' AMP check downloads weights)")
    optimizer: str = Field("auto", description="ultralytics optimizer name: auto | SGD | AdamW | Adam | ...")
    lr0: float = Field(0.01, gt=0, description="initial learning rate")
    patience: int = Field(100, ge=1, description="epochs without val improvement before stopping early")
    warmup_epochs: float = Field(3.0, ge=0, description="warm-up epochs (keep small for tiny runs)")
    mosaic: float = Field(1.0, ge=0, le=1, description="mosaic augmentation probability")
    close_mosaic: int = Field(10, ge=0, description="last epochs trained without mosaic")
    fliplr: float = Field(0.5, ge=0, le=1, description="horizontal flip probability (endoscopy has no 'up')")
    flipud: float = Field(0.5, ge=0, le=1, description="vertical flip probability")
    degrees: float = Field(0.0, ge=0, le=180, description="random rotation range +-deg")
    cache: bool | Literal["ram", "disk"] = Field(False, description="ultralytics image cache: false | ram | disk "
                                                                    "(true = ram)")
    plots: bool = Field(False, description="ultralytics' own plots (labels, curves, batch mosaics) in "
                                           "<run>/ultralytics")
    time_h: float | None = Field(
        None, gt=0,
        description="train for this many hours instead of a number of epochs (ultralytics' 'time': it "
                    "re-plans the epochs, and so the LR schedule, after measuring the first); null = use epochs")


class DetectorEvalConfig(StrictModel):
    """How the test split is scored (pycocotools) and what predict uses."""

    conf: float = Field(0.001, ge=0, le=1, description="confidence threshold for scoring (COCO AP needs the "
                                                       "low-score tail)")
    iou: float = Field(0.7, gt=0, le=1, description="NMS IoU threshold")
    max_det: int = Field(100, ge=1, description="detections kept per image (COCO AP counts at most 100)")
    predict_conf: float = Field(0.25, ge=0, le=1, description="confidence threshold stored in the checkpoint for "
                                                              "kvasir-ml predict and Label Studio pre-annotations")
    n_overlays: int = Field(8, ge=0, description="ground-truth vs prediction overlays written to <run>/plots "
                                                 "(test split)")
    batch: int = Field(16, ge=1, description="images per inference batch")


class DetectorConfig(StrictModel):
    """Everything one detector run needs."""

    name: str = Field("detector", description="run name prefix (W&B display name, artifact names)")
    data: DetectorDataConfig = DetectorDataConfig()
    model: DetectorModelConfig = DetectorModelConfig()
    train: DetectorTrainConfig = DetectorTrainConfig()
    eval: DetectorEvalConfig = DetectorEvalConfig()
    tracking: TrackingConfig = TrackingConfig()
