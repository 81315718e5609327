"""The classifier experiment config: one validated object, built at the edge, passed down.

Every key is documented once, in its ``Field(description=...)``: ``configs/classifier_*.yaml``
are generated from these models (``kvasir-ml config sync``) and ``kvasir-ml config show``
prints them. Unknown keys raise (``StrictModel``). The model and loss sections live in
``kvasir_ml.models.config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from kvasir_ml.config import DatasetConfig, Seed, StrictModel, TrackingConfig, load_config
from kvasir_ml.models.config import LossConfig, ModelConfig

__all__ = ["AugConfig", "ClassifierConfig", "DataConfig", "EvalConfig", "OptimConfig", "RuntimeConfig",
           "load_classifier_config"]  # the model and loss sections live in models.config


class DataConfig(DatasetConfig):
    """Which images and split, the input size, and where decoded images are cached."""

    cache_dir: str | None = Field(None, description="decoded, resized image cache, shareable between runs; null = "
                                                    "<run>/cache")
    image_size_px: int = Field(224, ge=32, le=1024, description="square input side in pixels")
    class_source: str = Field("kvasir-v2", description="taxonomy source whose classes are the single-label "
                                                       "classes (and the classes multi-label scores decode to)")


class OptimConfig(StrictModel):
    """Budget, learning rates and schedule."""

    epochs: int = Field(10, ge=1, description="total epochs (the training budget)")
    lr: float = Field(1e-3, gt=0, description="head learning rate (peak of one-cycle); under DDP the batch is per "
                                              "process, so scale lr with the world size yourself")
    backbone_lr_factor: float = Field(0.1, gt=0, le=1, description="backbone lr = lr * factor once unfrozen "
                                                                   "(discriminative fine-tuning)")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    schedule: Literal["onecycle", "cosine", "constant"] = Field("onecycle", description="LR schedule, stepped "
                                                                                        "per batch")
    warmup_epochs: int = Field(1, ge=0, description="epochs with the backbone frozen (head warm-up) before "
                                                    "everything trains")
    lr_find: bool = Field(False, description="run the LR range test first and train with its suggestion (rank 0 "
                                             "decides under DDP)")


class AugConfig(StrictModel):
    """Train-split augmentation (after the inset is masked or cropped)."""

    enabled: bool = Field(True, description="augment the train split")
    hflip: bool = Field(True, description="random horizontal flip")
    vflip: bool = Field(True, description="random vertical flip")
    rotate_deg: float = Field(180.0, ge=0, le=180, description="random rotation range +-deg (180 = any angle: "
                                                               "endoscopy has no 'up')")
    brightness: float = Field(0.2, ge=0, description="colour jitter: brightness factor range")
    contrast: float = Field(0.2, ge=0, description="colour jitter: contrast factor range")
    saturation: float = Field(0.1, ge=0, description="colour jitter: saturation factor range")
    hue: float = Field(0.02, ge=0, le=0.5, description="colour jitter: hue shift range")


class RuntimeConfig(StrictModel):
    """Where and how fast (may differ when resuming): device, precision, loader, seed."""

    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    amp: bool = Field(True, description="bf16 autocast (CUDA only; the head's logits stay fp32)")
    channels_last: bool = Field(True, description="NHWC memory format (faster convolutions on tensor cores)")
    compile: bool = Field(False, description="torch.compile the model (CUDA only; warm-up excluded from img/s)")
    workers: int = Field(4, ge=0, description="DataLoader worker processes (0 = in-process)")
    batch_size: int = Field(64, ge=1, description="images per step, per process (DDP: global = batch_size x world "
                                                  "size)")
    seed: Seed = Field(0, description="training seed (weights, order, augmentation)")
    deterministic: bool = Field(False, description="deterministic kernels (bit-exact resume on CPU; slower on GPU)")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = torch's default")
    progress: bool = Field(True, description="tqdm progress bars")


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
    ground_truth: Literal["folder", "verified"] = Field(
        "folder",
        description="what test is scored against: 'folder' = every test image with its canonical labels (for "
                    "Kvasir v2 / HyperKvasir the class folder's label set); 'verified' = only the test images a "
                    "verification pull marked verified, with their verified labels (kvasir-ml verify pull; train "
                    "on the version it writes, with the same split file). metrics.json 'ground_truth' records it")


class ClassifierConfig(StrictModel):
    """Everything one classifier run needs."""

    name: str = Field("classifier", description="run name prefix (W&B display name, artifact names)")
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
