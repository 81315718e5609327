"""The classifier experiment config: one validated object, built at the edge, passed down.

Sections mirror the YAML files under ``configs/classifier_*.yaml``; every key there carries
a ``# (type) description`` comment. Unknown keys raise (``StrictModel``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from kvasir_ml.config import DatasetConfig, StrictModel, TrackingConfig, load_config

Task = Literal["multilabel", "singlelabel"]
InsetMode = Literal["raw", "masked", "branch"]


class DataConfig(DatasetConfig):
    """Which images, which split (``DatasetConfig``), how they are cached."""

    # decoded, resized image cache; None = <run dir>/cache
    cache_dir: str | None = None
    image_size_px: int = Field(224, ge=32, le=1024)
    # source whose classes are the single-label classes (taxonomy.source(...).classes)
    class_source: str = "kvasir-v2"


class ModelConfig(StrictModel):
    arch: Literal["resnet50", "resnet18"] = "resnet50"
    # none | imagenet | path to a checkpoint (kvasir_ml .pt or a torchvision state_dict)
    weights: str = "none"
    # fetch imagenet weights from download.pytorch.org when they are not in $TORCH_HOME
    download_weights: bool = False
    task: Task = "multilabel"
    inset_mode: InsetMode = "branch"
    # side of the square inset crop fed to the branch (branch mode only)
    branch_size_px: int = Field(48, ge=16, le=256)
    # width of the branch's last conv layer (its feature size)
    branch_features: int = Field(64, ge=8, le=1024)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class LossConfig(StrictModel):
    # multilabel: bce | asl (asymmetric loss); singlelabel always uses cross-entropy
    name: Literal["bce", "asl"] = "bce"
    # BCE pos_weight = negatives/positives per label on the train split, clipped to max
    pos_weight: bool = False
    pos_weight_max: float = Field(10.0, gt=0)
    asl_gamma_neg: float = 4.0
    asl_gamma_pos: float = 0.0
    asl_clip: float = Field(0.05, ge=0.0, lt=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


class OptimConfig(StrictModel):
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    # backbone LR = lr * backbone_lr_factor once unfrozen (discriminative fine-tuning)
    backbone_lr_factor: float = Field(0.1, gt=0, le=1)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    # epochs with the backbone frozen (head warm-up) before everything trains
    warmup_epochs: int = Field(1, ge=0)
    # run the LR range test first and use its suggestion as lr
    lr_find: bool = False


class AugConfig(StrictModel):
    enabled: bool = True
    hflip: bool = True
    vflip: bool = True
    # maximum rotation in degrees (180 = any angle; endoscopy has no "up")
    rotate_deg: float = Field(180.0, ge=0, le=180)
    brightness: float = Field(0.2, ge=0)
    contrast: float = Field(0.2, ge=0)
    saturation: float = Field(0.1, ge=0)
    hue: float = Field(0.02, ge=0, le=0.5)


class RuntimeConfig(StrictModel):
    device: str = "auto"
    # bf16 autocast (CUDA only; ignored on CPU)
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    workers: int = Field(4, ge=0)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    deterministic: bool = False
    # torch CPU threads; 0 = torch's default
    threads: int = Field(0, ge=0)
    progress: bool = True


# How best.pt is chosen: the comparison needs a rule that favours neither task (see EvalConfig).
SelectRule = Literal["last", "val_loss", "val_macro_ap"]


class EvalConfig(StrictModel):
    """Which epoch's weights are the run's model, and how the test split is scored."""

    select: SelectRule = Field(
        "last",
        description="which epoch becomes best.pt and is scored on test: 'last' = the fixed last epoch (same "
                    "budget for every model; with the one-cycle schedule the LR has annealed to ~0 there); "
                    "'val_loss' = the epoch with the lowest loss on val of the model's OWN objective; "
                    "'val_macro_ap' = highest val macro AP (the multi-label task's metric: it favours the "
                    "multi-label model, so comparisons refuse it)")
    tta: bool = Field(
        False,
        description="also score test with test-time augmentation (mean of the probabilities over the 8 flips "
                    "and 90-degree rotations of the main image; the inset crop is not turned); reported apart "
                    "as metrics.json 'test_tta', never mixed into 'test'")


class ClassifierConfig(StrictModel):
    """Everything one classifier run needs."""

    name: str = "classifier"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    aug: AugConfig = AugConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    tracking: TrackingConfig = TrackingConfig()
    eval: EvalConfig = EvalConfig()


def load_classifier_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ClassifierConfig:
    """Load ``configs/classifier_*.yaml`` plus ``key=value`` overrides (unknown keys raise ConfigError)."""
    return load_config(ClassifierConfig, path, overrides)
