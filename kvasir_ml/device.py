"""Which device a run uses: one rule for the classifier, the detector and predict."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when CUDA works, else ``cpu``; ``cpu`` / ``cuda`` / ``cuda:N`` as given.

    Raises:
        ValueError: a CUDA device is asked for but CUDA is not available (or the name is not a
            device torch knows).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device {name!r} is not a device name (auto | cpu | cuda | cuda:N): {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return device
