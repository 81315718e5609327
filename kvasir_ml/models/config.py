"""The ``model`` and ``loss`` sections of a classifier config.

They live with the models (``build_model`` and ``build_loss`` take them), so ``models/``
depends on nothing in ``train/``; ``train.config.ClassifierConfig`` assembles them with the
data, optimiser and runtime sections.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kvasir_ml.config import StrictModel

Task = Literal["multilabel", "singlelabel"]
InsetMode = Literal["raw", "masked", "branch"]


class ModelConfig(StrictModel):
    """The network: backbone, initial weights, task and what it sees of the position-map inset."""

    arch: Literal["resnet50", "resnet18"] = Field("resnet50", description="torchvision backbone")
    weights: str = Field(
        "none", description="none = random init (no download, ever) | imagenet = torchvision's IMAGENET1K weights "
                            "from $TORCH_HOME | path to a checkpoint to start from (a kvasir_ml .pt: the whole model "
                            "when its outputs and inset setup match, else its backbone; or a torchvision "
                            "state_dict)")
    download_weights: bool = Field(False, description="fetch imagenet weights from download.pytorch.org when they "
                                                      "are not in $TORCH_HOME (needs internet)")
    task: Task = Field("multilabel", description="multilabel = sigmoid over the labels, thresholds tuned on val | "
                                                 "singlelabel = softmax over the source classes")
    inset_mode: InsetMode = Field(
        "branch", description="raw = image as is | masked = inset region blacked out on every image | branch = "
                              "masked image + the inset crop through a small CNN + the inset state, fused before "
                              "the head")
    branch_size_px: int = Field(48, ge=16, le=256, description="side of the square inset crop fed to the branch")
    branch_features: int = Field(64, ge=8, le=1024, description="feature size of the inset branch (its last conv "
                                                                "layer's width)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the head")


class LossConfig(StrictModel):
    """The training objective (single-label models always use cross-entropy)."""

    name: Literal["bce", "asl"] = Field("bce", description="multi-label loss: bce | asl (asymmetric loss); "
                                                           "single-label always uses cross-entropy")
    pos_weight: bool = Field(False, description="BCE pos_weight w = negatives/positives per label on train (clipped "
                                                "to pos_weight_max), with log(w) inside the loss: the optimum stays "
                                                "plain BCE's and the gradient is plain BCE's times one factor (up to "
                                                "w on low scores) for positives and negatives alike, so it only "
                                                "rescales steps (a learning-rate-like knob for rare labels); "
                                                "calibration comes from temperature scaling fitted on val")
    pos_weight_max: float = Field(10.0, gt=0, description="upper clip of pos_weight")
    asl_gamma_neg: float = Field(4.0, ge=0, description="ASL focusing exponent for negatives")
    asl_gamma_pos: float = Field(0.0, ge=0, description="ASL focusing exponent for positives")
    asl_clip: float = Field(0.05, ge=0.0, lt=1.0, description="ASL probability margin shifted off negatives")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0,
                                   description="cross-entropy label smoothing (single-label); the multi-label model "
                                               "has no counterpart, so a controlled comparison refuses > 0")
