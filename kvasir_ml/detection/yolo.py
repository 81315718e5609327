"""YOLO models through ultralytics, offline: local weights only, checked before ultralytics opens them.

ultralytics is imported through ``ultralytics_env.ensure_ultralytics`` (no network; see there).
``YOLO("yolo11n.pt")`` with a missing file downloads it -> ``resolve_weights`` and
``load_yolo`` only accept existing local paths and model YAMLs, and check them first
(``safe_load``, ``model_yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kvasir_ml.detection.model_yaml import check_model_yaml_file
from kvasir_ml.detection.safe_load import check_detector_checkpoint
from kvasir_ml.detection.ultralytics_env import WeightsError, ensure_ultralytics


def resolve_weights(arch: str, weights: str | None, trust: bool = False) -> str:
    """What to hand ``YOLO(...)``: a local ``.pt`` path, or the model YAML (from scratch).

    Args:
        arch: model YAML, used when ``weights`` is None.
        weights: local ``.pt`` file or None.
        trust: skip the check that the weights file cannot run code (``safe_load``).

    Raises:
        WeightsError: ``weights`` is given but is not an existing file. Hub names such as
            ``yolo11n.pt`` are refused rather than downloaded. safe_load.UnsafeCheckpointError:
            the file would run code when ultralytics opens it. model_yaml.UnsafeModelDescriptionError:
            the model YAML (``arch``, or the one inside the checkpoint) holds strings ultralytics
            would evaluate.
    """
    if weights is None:
        check_model_yaml_file(arch)  # parse_model evaluates strings of it: checked even when weights are trusted
        return arch
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"detector weights {weights!r} do not exist (model.weights must be a local .pt file; "
            "nothing is downloaded — use model.weights=null to train from the model YAML)"
        )
    check_detector_checkpoint(path, trust=trust)
    return str(path.resolve())


def ultralytics_device(device: Any) -> str:
    """A device name (``auto`` resolved by ``kvasir_ml.device.resolve_device``) in ultralytics'
    form: ``cuda:1`` -> ``1``, ``cuda`` -> ``0``, ``cpu`` -> ``cpu``."""
    from kvasir_ml.device import resolve_device

    device = str(resolve_device(str(device)))
    if device.startswith("cuda"):
        return device.split(":", 1)[1] if ":" in device else "0"
    return device


def resolve_amp(amp: str, device: str) -> bool | str:
    """The ``amp`` value for ``YOLO.train``: never ``True`` (that triggers the download check)."""
    if not device.startswith("cuda") or amp == "fp32":
        return False
    import torch

    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return "bf16"
    return False


def load_yolo(weights_or_yaml: str | Path, trust: bool = False):
    """``ultralytics.YOLO`` for a local checkpoint or a model YAML, offline.

    Args:
        weights_or_yaml: a ``.pt`` file or a model YAML name.
        trust: skip the check that the checkpoint cannot run code (``safe_load``).

    Raises:
        WeightsError: missing file. safe_load.UnsafeCheckpointError: the checkpoint would
            run code (or needs classes outside the allow-list) when ultralytics opens it.
            model_yaml.UnsafeModelDescriptionError: the model YAML (the file, or the one a
            checkpoint carries) holds strings ultralytics would evaluate.
    """
    ensure_ultralytics()
    from ultralytics import YOLO

    target = str(weights_or_yaml)
    if target.endswith((".yaml", ".yml")):
        check_model_yaml_file(target)  # parse_model would eval() its strings (activation, modules, args)
    else:
        if not Path(target).is_file():
            raise WeightsError(f"detector checkpoint {target!r} does not exist")
        check_detector_checkpoint(target, trust=trust)  # ultralytics unpickles with weights_only=False
    return YOLO(target)
