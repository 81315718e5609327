"""ResNet classifiers: multi-label (sigmoid over labels) or single-label (softmax over classes).

The model owns its preprocessing: it takes ``uint8`` images ``(B, 3, H, W)`` and normalises
them with the mean/std of its weights' transforms, so data loaders ship 4x fewer bytes and
``predict`` cannot forget a step. In ``branch`` mode a small CNN reads the inset crop and
its features, plus the one-hot inset state, are concatenated with the backbone features
before the head.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
import torchvision
from torch import nn

from kvasir_ml.data.inset import INSET_STATES
from kvasir_ml.models.config import ModelConfig

log = logging.getLogger(__name__)


_WEIGHTS = {
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
}


class WeightsUnavailableError(ValueError):
    """Pretrained weights are not in the torch cache and may not be downloaded."""


def preprocessing(arch: str) -> dict[str, list[float]]:
    """Mean/std of the architecture's torchvision weights (read from their transforms, no download)."""
    transforms = _WEIGHTS[arch].transforms()
    return {"mean": list(transforms.mean), "std": list(transforms.std)}


def _imagenet_state_dict(arch: str, download: bool) -> dict[str, torch.Tensor]:
    weights = _WEIGHTS[arch]
    file_name = Path(weights.url).name
    local = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if local.is_file():
        return torch.load(local, map_location="cpu", weights_only=True)
    hint = (
        f"{arch} ImageNet weights ({weights}) are not in the torch cache: place {file_name} "
        f"(from {weights.url}) at {local} (set $TORCH_HOME to change the cache), "
        "or set model.download_weights=true on a machine with internet access"
    )
    if not download:
        raise WeightsUnavailableError(hint)
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError, SSL errors, timeouts: all mean "not fetchable"
        raise WeightsUnavailableError(f"{hint} (download failed: {exc})") from None


class WeightsFileError(ValueError):
    """``model.weights`` names a file that is not a safely loadable state dict or checkpoint."""


def _load_weights_file(path: Path) -> dict[str, Any]:
    """The file's dict, loaded with ``weights_only=True``; any failure names the file."""
    if not path.is_file():
        raise WeightsFileError(f"model.weights: {path} is neither 'none', 'imagenet' nor an existing checkpoint file")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — disallowed globals (a pickle that would run code), junk, truncation
        text = str(exc)
        reason = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        reason = (reason.strip().splitlines() or [type(exc).__name__])[0][:300]
        raise WeightsFileError(f"model.weights {path} is refused: it cannot be loaded safely (weights_only=True: "
                               f"{reason}); give a state dict or a kvasir_ml checkpoint") from None
    if not isinstance(saved, dict):
        raise WeightsFileError(f"model.weights {path} holds a {type(saved).__name__}, not a state dict or checkpoint")
    return saved


def check_weights_file(cfg: ModelConfig) -> None:
    """Load ``model.weights`` once when it is a file, so a bad one is refused before a run
    creates anything (``build_model`` loads it again after the data is prepared).

    Raises:
        WeightsFileError: naming the file and what is wrong.
    """
    if cfg.weights not in ("none", "imagenet"):
        _load_weights_file(Path(cfg.weights))


def _whole_model_state(saved: dict[str, Any], cfg: ModelConfig, output_names: Sequence[str] | None) -> dict | None:
    """A kvasir_ml checkpoint's full state when it fits this model exactly (same task, inset mode,
    branch and outputs in the same order): fine-tuning then keeps the head and the branch too."""
    if output_names is None or "model" not in saved or "config" not in saved:
        return None
    old = saved["config"].get("model", {})
    names = saved.get("label_names") if cfg.task == "multilabel" else saved.get("class_names")
    same = all(old.get(k) == getattr(cfg, k) for k in ("arch", "task", "inset_mode", "branch_features"))
    return saved["model"] if same and list(names or []) == list(output_names) else None


class InsetBranch(nn.Module):
    """Three strided conv blocks + global pooling: enough to read a small panel's curve."""

    def __init__(self, out_features: int):
        super().__init__()
        widths = [3, out_features // 4, out_features // 2, out_features]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class KvasirClassifier(nn.Module):
    """ResNet backbone (+ optional inset branch) and a linear head producing logits.

    Args:
        arch: ``resnet50`` or ``resnet18``.
        n_outputs: labels (multi-label) or classes (single-label).
        inset_mode: ``raw`` | ``masked`` | ``branch`` (only ``branch`` changes the network).
        branch_features: feature size of the inset branch.
        dropout: dropout before the head.
        mean, std: per-channel normalisation applied to ``uint8`` input.
    """

    mean: torch.Tensor  # buffers (register_buffer)
    std: torch.Tensor

    def __init__(self, arch: str, n_outputs: int, inset_mode: str, branch_features: int = 64,
                 dropout: float = 0.0, mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        self.backbone = getattr(torchvision.models, arch)(weights=None)
        n_feat = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        self.use_branch = inset_mode == "branch"
        if self.use_branch:
            self.branch = InsetBranch(branch_features)
            n_feat += branch_features + len(INSET_STATES)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(n_feat, n_outputs)
        pre = preprocessing(arch)
        self.register_buffer("mean", torch.tensor(mean or pre["mean"]).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std or pre["std"]).view(1, 3, 1, 1) * 255.0)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def forward(self, image: torch.Tensor, inset: torch.Tensor | None = None,
                inset_state: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.backbone(self.normalize(image))
        if self.use_branch:
            if inset is None or inset_state is None:
                raise ValueError("branch model needs the inset crop and the inset state")
            feats = torch.cat([feats, self.branch(self.normalize(inset)), inset_state.to(feats.dtype)], dim=1)
        # The head runs in fp32 even under bf16 autocast: bf16 keeps ~3 significant digits, too
        # coarse for logits that become probabilities and losses near 0 or 1.
        device_type = "cpu" if feats.device.type == "meta" else feats.device.type  # meta: FLOP counting
        with torch.autocast(device_type, enabled=False):
            return self.head(self.dropout(feats.float()))

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Everything trained from scratch: head and inset branch."""
        backbone = {id(p) for p in self.backbone.parameters()}
        return [p for p in self.parameters() if id(p) not in backbone]

    def set_backbone_frozen(self, frozen: bool) -> None:
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)


def build_model(cfg: ModelConfig, n_outputs: int, output_names: Sequence[str] | None = None) -> KvasirClassifier:
    """Build the classifier and load its initial weights.

    Args:
        cfg: model section of the run config.
        n_outputs: active labels (multilabel) or source classes (singlelabel).
        output_names: the labels (or classes) of the outputs, in order. With a kvasir_ml
            checkpoint as ``weights`` whose outputs, task and inset setup are the same, the
            whole model starts from it (fine-tuning: the loop's retrain); otherwise only the
            backbone does and the head is new.

    Returns:
        The model on CPU, in train mode.

    Raises:
        WeightsUnavailableError: ``imagenet`` weights are neither cached nor downloadable.
        ValueError: ``weights`` is a path that does not exist.
    """
    model = KvasirClassifier(cfg.arch, n_outputs, cfg.inset_mode, cfg.branch_features, cfg.dropout)
    if cfg.weights == "none":
        return model
    if cfg.weights == "imagenet":
        state = _imagenet_state_dict(cfg.arch, cfg.download_weights)
    else:
        saved = _load_weights_file(Path(cfg.weights))
        whole = _whole_model_state(saved, cfg, output_names) if isinstance(saved, dict) else None
        if whole is not None:
            model.load_state_dict(whole)
            log.info("fine-tuning the whole model (backbone, head, inset branch) from %s", cfg.weights)
            return model
        state = saved
        if isinstance(saved, dict) and "model" in saved:  # a kvasir_ml checkpoint with other outputs
            state = {k[len("backbone."):]: v for k, v in saved["model"].items() if k.startswith("backbone.")}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("fc.")]:
        raise ValueError(f"model.weights {cfg.weights!r} do not fit {cfg.arch}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    log.info("loaded %s backbone weights from %s", cfg.arch, cfg.weights)
    return model
