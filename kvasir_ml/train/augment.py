"""Augmentation of whole batches on the device: per-image flips, rotation and colour jitter.

Why not per sample in the DataLoader: hue jitter and rotation cost ~15-18 ms per 224 px
image per CPU worker, so 8 workers feed ~500 img/s while an H100 trains a ResNet50 at several
thousand. Why not ``torchvision.transforms.v2`` on a batch tensor: it draws ONE set of
parameters per call, so every image of the batch would get the same angle and colour shift
(per image it is a Python loop of small kernels). Why not kornia (per-image parameters on
batches): it is one more dependency to carry to offline GPU hosts, and it draws from the
global torch RNG, which the resume guarantee would then have to thread through. The ops
are a few lines of tensor code:

* geometry: flips and rotation folded into one affine matrix per image and applied with
  ONE ``grid_sample`` per batch (bilinear, black fill like the endoscope's border), so an
  image is interpolated once; without rotation the flips are exact index flips;
* colour: brightness, contrast, saturation and hue in ``torchvision``'s ``ColorJitter``
  formulas (grey weights 0.2989/0.587/0.114; hue shifted in HSV), per-image factors, in that
  fixed order (torchvision shuffles the order per call), on float values without the
  per-step rounding to uint8.

All random draws come from ``generator``, a CPU ``torch.Generator``: the same draws on CPU
and GPU, and its state goes into checkpoints with the other RNG states. The same code runs
on CPU (tests, CPU training). Inset masking/cropping happens earlier, in the Dataset, so it
always precedes this geometry.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kvasir_ml.train.config import AugConfig

_GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


class BatchAugment:
    """Callable ``(B, 3, H, W)`` uint8/float 0-255 -> float32 0-255 on the same device.

    Args:
        cfg: the aug section (``enabled`` must be true; see ``build_batch_augment``).
        seed: initial seed of ``generator`` (runs reseed it every epoch).
    """

    def __init__(self, cfg: AugConfig, seed: int = 0):
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        b = images.shape[0]
        # One draw per batch: 2 flips, angle, 4 colour factors per image (CPU, then to the device).
        u = torch.rand(b, 7, generator=self.generator).to(images.device, non_blocking=True)
        x = images.float()
        hflip = (u[:, 0] < 0.5) if c.hflip else torch.zeros_like(u[:, 0], dtype=torch.bool)
        vflip = (u[:, 1] < 0.5) if c.vflip else torch.zeros_like(u[:, 1], dtype=torch.bool)
        if c.rotate_deg > 0:
            angle = (u[:, 2] * 2 - 1) * math.radians(c.rotate_deg)
            x = _rotate_flip(x, angle, hflip, vflip)
        else:
            x = torch.where(hflip.view(-1, 1, 1, 1), x.flip(3), x)
            x = torch.where(vflip.view(-1, 1, 1, 1), x.flip(2), x)
        if c.brightness > 0:
            x = (x * _factor(u[:, 3], c.brightness)).clamp_(0, 255)
        if c.contrast > 0:
            mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
            x = _blend(x, mean, _factor(u[:, 4], c.contrast))
        if c.saturation > 0:
            x = _blend(x, _grey(x), _factor(u[:, 5], c.saturation))
        if c.hue > 0:
            x = _shift_hue(x, (u[:, 6] * 2 - 1) * c.hue)
        return x



def build_batch_augment(cfg: AugConfig, seed: int = 0) -> BatchAugment | None:
    """The train augmentation, or None when ``cfg.enabled`` is false or every op is off."""
    ops = (cfg.hflip, cfg.vflip, cfg.rotate_deg > 0, max(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue) > 0)
    return BatchAugment(cfg, seed) if cfg.enabled and any(ops) else None


def _factor(u: torch.Tensor, spread: float) -> torch.Tensor:
    """Uniform in [max(0, 1 - spread), 1 + spread] (ColorJitter's range), shaped to broadcast."""
    lo, hi = max(0.0, 1.0 - spread), 1.0 + spread
    return (lo + u * (hi - lo)).view(-1, 1, 1, 1)


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (_GREY[0] * x[:, 0] + _GREY[1] * x[:, 1] + _GREY[2] * x[:, 2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * x + (1 - factor) * other).clamp_(0, 255)


def _rotate_flip(x: torch.Tensor, angle: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor) -> torch.Tensor:
    """Rotate each image by ``angle`` (radians) about its centre after the flips; one resample."""
    height, width = x.shape[-2:]
    cos, sin = torch.cos(angle), torch.sin(angle)
    fx = 1.0 - 2.0 * hflip.to(x.dtype)  # -1 mirrors the x axis
    fy = 1.0 - 2.0 * vflip.to(x.dtype)
    # Output -> input sampling matrix in grid_sample's normalised coordinates; the aspect
    # terms keep the rotation rigid in pixels when H != W.
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = cos * fx
    theta[:, 0, 1] = -sin * fy * (height / width)
    theta[:, 1, 0] = sin * fx * (width / height)
    theta[:, 1, 1] = cos * fy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Add ``shift`` (fraction of a turn, per image) to the hue; saturation and value kept."""
    rgb = x / 255.0
    maxc, _ = rgb.max(dim=1)
    minc, _ = rgb.min(dim=1)
    r, g, b = rgb.unbind(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    h = torch.remainder(h + shift.view(-1, 1, 1), 1.0)
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    # HSV -> RGB without branches: channel n is v - v*s*clamp(min(k, 4 - k), 0, 1), k = (n + 6h) mod 6.
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + h * 6.0, 6.0)
        out.append(maxc - maxc * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, dim=1) * 255.0
